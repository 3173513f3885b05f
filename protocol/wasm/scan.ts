// AssemblyScript (not TypeScript: built by asc, see asconfig.json and protocol/README.md "WebAssembly
// core"). The byte work of the CoT scan and of the framer's fast path: one pass over a frame that
// checks it is well-formed XML an ATAK parser accepts and records where the header fields are.
// protocol/scan.ts owns the memory layout below, copies bytes in, and builds strings from the
// recorded ranges; every check and reason here is the one documented in protocol/README.md "Scan".
//
// SIMD (v128) classifies 16 bytes at a time where runs are long enough to matter (attribute
// values, character data, comments, CDATA, PIs, the declaration between ATAK events); names and
// the structural points are scalar. Memory beyond a scanned range is always readable (the host
// keeps at least 16 bytes after the data), so a 16-byte load never traps; hits at or past the
// range end are treated as "not found".

// ---- memory layout (must match protocol/scan.ts) ----------------------------------------------
// [0, 512)       name byte tables, written by init()
// [2048, 2560)   results: field starts/ends/flags, misc slots
// [2560, 2624)   attribute names of the current element (linear duplicate check)
// [4096, 8192)   open-element stack (512 entries of 8 bytes), grows into the scratch area
// [8192, 9728)   dests (64 × 6 i32), grows likewise
// [9728, 9984)   further <marti> ranges (64 i32), grows likewise
// [10240, 12288) attribute hash table (256 slots of 8 bytes), grows likewise
// [65536, 196608) string intern table (1024 slots of 128 bytes, see intern())
// [196608, 229376) the host's staging area for lazily read values (see record())
// the host's data from 229376; scratch (growth of the above) from the address the host passes.

const T_NAME: i32 = 0; // bit 1: NAME_START, bit 2: NAME_CHAR

const RES: i32 = 2048;
const NF: i32 = 17;
const FS: i32 = RES; // i32[NF] start (-2 absent; F_LAT -1: the point element exists)
const FE: i32 = RES + 68; // i32[NF] end
const FF: i32 = RES + 136; // i32[NF] flags
const MISC: i32 = RES + 256; // i32 slots below
const M_ERR: i32 = 0, M_ERROFF: i32 = 1, M_END: i32 = 2, M_POS: i32 = 3, M_NDESTS: i32 = 4,
  M_DESTS: i32 = 5, M_MSTART: i32 = 6, M_MEND: i32 = 7, M_NMORE: i32 = 8, M_MORE: i32 = 9, M_LINK: i32 = 10,
  M_LAZYF: i32 = 14;
const STALE_MS: i32 = MISC + 64; // f64: stale as epoch ms; NaN: absent or not the plain CoT form
const TIME_MS: i32 = MISC + 96; // f64: time as epoch ms, likewise (the router reads stale - time)
const M_IDS: i32 = 18; // i32[5]: intern slot of uid, type, callsign, endpoint, link uid (see intern())
const M_RECLEN: i32 = 23; // length of the record of lazily read values written (see record()), -1: none
const ATTR_S: i32 = 2560;
const ATTR_E: i32 = 2592;
const ATTR_LINEAR_MAX: i32 = 8;
const STACK0: i32 = 4096, STACK0_CAP: i32 = 512;
const DESTS0: i32 = 8192, DESTS0_CAP: i32 = 64;
const MORE0: i32 = 9728, MORE0_CAP: i32 = 64;
const HASH0: i32 = 10240, HASH0_CAP: i32 = 256;

// ---- bytes -------------------------------------------------------------------------------------
const TAB: i32 = 0x09, LF: i32 = 0x0a, CR: i32 = 0x0d, SP: i32 = 0x20, BANG: i32 = 0x21, DQ: i32 = 0x22,
  HASH: i32 = 0x23, AMP: i32 = 0x26, SQ: i32 = 0x27, DASH: i32 = 0x2d, SLASH: i32 = 0x2f, SEMI: i32 = 0x3b,
  LT: i32 = 0x3c, EQ: i32 = 0x3d, GT: i32 = 0x3e, QM: i32 = 0x3f, LSQB: i32 = 0x5b, RSQB: i32 = 0x5d;
const NAME_START: i32 = 1, NAME_CHAR: i32 = 2;

// Reasons: indexes into REASONS in protocol/scan.ts (same order as ScanReason).
const R_EMPTY: i32 = 1, R_TEXT_OUTSIDE: i32 = 2, R_NOT_EVENT: i32 = 3, R_TRAILING: i32 = 4, R_TAG_NAME: i32 = 5,
  R_ATTR_NAME: i32 = 6, R_ATTR_SPACE: i32 = 7, R_ATTR_EQ: i32 = 8, R_ATTR_QUOTE: i32 = 9, R_ATTR_LT: i32 = 10,
  R_ATTR_UNTERMINATED: i32 = 11, R_ATTR_DUPLICATE: i32 = 12, R_TAG_UNTERMINATED: i32 = 13, R_BAD_SLASH: i32 = 14,
  R_END_TAG: i32 = 15, R_UNCLOSED: i32 = 16, R_REFERENCE: i32 = 17, R_UTF8: i32 = 18, R_CHAR: i32 = 19,
  R_CDATA_END: i32 = 20, R_COMMENT: i32 = 21, R_CDATA: i32 = 22, R_PI: i32 = 23, R_XML_DECL: i32 = 24,
  R_DOCTYPE: i32 = 25, R_NO_UID: i32 = 26, R_NO_TYPE: i32 = 27, R_NESTED_EVENT: i32 = 28, R_END_IN_MARKUP: i32 = 29;

// Element kinds and fields (as in protocol/scan.ts).
const K_OTHER: i32 = 0, K_EVENT: i32 = 1, K_POINT: i32 = 2, K_DETAIL: i32 = 3, K_CONTACT: i32 = 4,
  K_GROUP: i32 = 5, K_MARTI: i32 = 6, K_DEST: i32 = 7, K_LINK: i32 = 8;
const F_UID: i32 = 0, F_TYPE: i32 = 1, F_HOW: i32 = 2, F_TIME: i32 = 3, F_START: i32 = 4, F_STALE: i32 = 5,
  F_VERSION: i32 = 6, F_LAT: i32 = 7, F_LON: i32 = 8, F_HAE: i32 = 9, F_CE: i32 = 10, F_LE: i32 = 11,
  F_CALLSIGN: i32 = 12, F_ENDPOINT: i32 = 13, F_GNAME: i32 = 14, F_GROLE: i32 = 15, F_LINK: i32 = 16;
const V_UTF8: i32 = 1, V_DECODE: i32 = 2;

@inline function at(p: i32): i32 { return <i32>load<u8>(<usize>p); }
@inline function at2(p: i32): i32 { return <i32>load<u16>(<usize>p); } // little-endian pair
@inline function at4(p: i32): i32 { return load<i32>(<usize>p); }
// the byte at p, or -1 at or past the end n (a byte past n is always readable: no branch)
@inline function atOr(p: i32, n: i32): i32 { return select<i32>(at(p), -1, p < n); }
@inline function misc(i: i32): i32 { return load<i32>(<usize>(MISC + i * 4)); }
@inline function setMisc(i: i32, v: i32): void { store<i32>(<usize>(MISC + i * 4), v); }
@inline function fStart(f: i32): i32 { return load<i32>(<usize>(FS + f * 4)); }
// one compare for the usual non-space byte, then a bit test of tab, LF, CR and space (c may be -1)
@inline function isWs(c: i32): bool { return <u32>c <= 0x20 && ((<u64>0x100002600 >> <u64>c) & 1) != 0; }

// "uid" etc. as little-endian words, for comparing names in one load
const W_UID: i32 = 0x646975, W_HOW: i32 = 0x776f68, W_TYPE: i32 = 0x65707974, W_TIME: i32 = 0x656d6974,
  W_STAR: i32 = 0x72617473 /* "star" */, W_STAL: i32 = 0x6c617473 /* "stal" */, W_VERS: i32 = 0x73726576,
  W_LAT: i32 = 0x74616c, W_LON: i32 = 0x6e6f6c, W_HAE: i32 = 0x656168, W_CALL: i32 = 0x6c6c6163,
  W_SIGN: i32 = 0x6e676973, W_ENDP: i32 = 0x70646e65, W_OINT: i32 = 0x746e696f, W_NAME: i32 = 0x656d616e,
  W_ROLE: i32 = 0x656c6f72, W_EVEN: i32 = 0x6e657665, W_POIN: i32 = 0x6e696f70, W_DETA: i32 = 0x61746564,
  W_CONT: i32 = 0x746e6f63, W_TACT: i32 = 0x74636174, W___GR: i32 = 0x72675f5f, W_ROUP: i32 = 0x70756f72,
  W_MART: i32 = 0x7472616d, W_LINK: i32 = 0x6b6e696c, W_DEST: i32 = 0x74736564;
const M3: i32 = 0xffffff;

export function init(): void {
  // the SIMD constants are set here, not where declared, so they stay globals that V8 loads
  // (binaryen would fold a global never written into an immediate V8 rebuilds at every use)
  ZERO = i8x16.splat(0);
  NIB = i8x16.splat(0x0f);
  SPLAT_20 = i8x16.splat(0x20);
  SPLAT_LT = i8x16.splat(<i8>LT);
  SPLAT_AMP = i8x16.splat(<i8>AMP);
  SPLAT_GT = i8x16.splat(<i8>GT);
  SPLAT_EQ = i8x16.splat(<i8>EQ);
  SPLAT_DQ = i8x16.splat(<i8>DQ);
  VAL_HI = i8x16(0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  VAL_LO_DQ = i8x16(0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0);
  VAL_LO_SQ = i8x16(0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 2, 0, 0, 0);
  WS_TAB = i8x16(0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, 0, 0, -1, 0, 0);
  NAME_HI = i8x16(0, 0, 1, 2, 4, 2 | 8, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0);
  NAME_LO = i8x16(2, 2 | 4, 2 | 4, 2 | 4, 2 | 4, 2 | 4, 2 | 4, 2 | 4, 2 | 4, 2 | 4, 2 | 4, 4, 4, 1 | 4, 1 | 4, 4 | 8);
  for (let c = 0; c < 256; c++) {
    let nt = 0;
    if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x5f || c == 0x3a || c >= 0x80) nt = NAME_START | NAME_CHAR;
    else if ((c >= 0x30 && c <= 0x39) || c == DASH || c == 0x2e) nt = NAME_CHAR;
    store<u8>(<usize>(T_NAME + c), nt);
  }
}

let errReason: i32 = 0;
let errOffset: i32 = 0;
function fail(r: i32, off: i32): i32 {
  errReason = r;
  errOffset = off;
  return -1;
}

// ---- growable scratch (bump allocation above the host's data; reset per call) -----------------
let brk: i32 = 0;
function alloc(bytes: i32): i32 {
  const p = (brk + 15) & ~15;
  const end = p + bytes + 16; // + 16: SIMD loads may read past
  const have = <i32>memory.size() << 16;
  if (end > have) memory.grow(((end - have) >> 16) + 1);
  brk = p + bytes;
  return p;
}

let stack: i32 = STACK0; // entries: i32 name start, i32 (name length << 4 | kind)
let stackCap: i32 = STACK0_CAP;
let dests: i32 = DESTS0; // entries: 6 i32 (callsign start, end, flags, uid start, end, flags)
let destsCap: i32 = DESTS0_CAP;
let ndests: i32 = 0;
let more: i32 = MORE0;
let moreCap: i32 = MORE0_CAP;
let nmore: i32 = 0;

function pushMore(v: i32): void {
  if (nmore == moreCap) {
    const p = alloc(moreCap * 8);
    memory.copy(<usize>p, <usize>more, <usize>(moreCap * 4));
    more = p;
    moreCap *= 2;
  }
  store<i32>(<usize>(more + nmore * 4), v);
  nmore++;
}

// ---- SIMD runs ---------------------------------------------------------------------------------

/** First index in [q, n) of a byte an attribute value quoted with `quote` must look at (the
 *  quote, '<', '&', controls, bytes >= 0x80); n when none. */
@inline function valueRun(q: i32, n: i32, quote: i32): i32 {
  // CoT values are short: the first block is straight-line code, a loop only for longer runs
  const lo = quote == DQ ? VAL_LO_DQ : VAL_LO_SQ;
  const bits = valueBits(q, lo);
  if (bits != 0) { q += ctz(bits); return q < n ? q : n; }
  return valueRunLong(q + 16, n, lo);
}

/** lanes of the 16 bytes at q an attribute value must look at: one lookup for the quote, '<' and
 *  '&' (rows 2 and 3 of the byte table), one compare for controls and bytes >= 0x80 (signed < 0x20) */
@inline function valueBits(q: i32, lo: v128): i32 {
  return valueBitsOf(v128.load(<usize>q), lo);
}

@inline function valueBitsOf(v: v128, lo: v128): i32 {
  const hi = i8x16.swizzle(VAL_HI, v128.and(i16x8.shr_u(v, 4), NIB));
  const cls = v128.and(hi, i8x16.swizzle(lo, v128.and(v, NIB)));
  return ~i8x16.bitmask(i8x16.eq(v128.or(i8x16.lt_s(v, SPLAT_20), cls), ZERO)) & 0xffff;
}

function valueRunLong(q: i32, n: i32, lo: v128): i32 {
  while (q < n) {
    const bits = valueBits(q, lo);
    if (bits != 0) { q += ctz(bits); return q < n ? q : n; }
    q += 16;
  }
  return n;
}

// SIMD constants as mutable globals: V8 then loads each with one instruction where it would
// otherwise rebuild the immediate in every call (measured: ~5% of the core's time on CoT)
let ZERO: v128 = i8x16.splat(0);
let NIB: v128 = i8x16.splat(0);
let SPLAT_20: v128 = i8x16.splat(0);
let SPLAT_LT: v128 = i8x16.splat(0);
let SPLAT_AMP: v128 = i8x16.splat(0);
let SPLAT_GT: v128 = i8x16.splat(0);
let SPLAT_EQ: v128 = i8x16.splat(0);
let SPLAT_DQ: v128 = i8x16.splat(0);
// rows: 1 = high nibble 2 ('"' 0x22, '&' 0x26, '\'' 0x27), 2 = high nibble 3 ('<' 0x3c)
let VAL_HI: v128 = i8x16.splat(0);
let VAL_LO_DQ: v128 = i8x16.splat(0);
let VAL_LO_SQ: v128 = i8x16.splat(0);
let WS_TAB: v128 = i8x16.splat(0);
let NAME_HI: v128 = i8x16.splat(0);
let NAME_LO: v128 = i8x16.splat(0);

/** controls other than tab/LF/CR, and bytes >= 0x80, as a lane mask */
@inline function oddBytes(v: v128): v128 {
  // swizzle gives 0 for indexes >= 16; tab, LF and CR map to -1 and are removed from "< 0x20"
  return v128.andnot(i8x16.lt_s(v, SPLAT_20), i8x16.swizzle(WS_TAB, v));
}

/** First index in [p, n) of a byte character data must look at ('<', '&', '>', odd bytes); n
 *  when none. Between CoT elements there is at most a line break: one straight-line block. */
@inline function textRun(p: i32, n: i32): i32 {
  const bits = textBits(p);
  if (bits != 0) { p += ctz(bits); return p < n ? p : n; }
  return textRunLong(p + 16, n);
}

@inline function textBits(p: i32): i32 {
  const v = v128.load(<usize>p);
  return i8x16.bitmask(v128.or(oddBytes(v), v128.or(i8x16.eq(v, SPLAT_LT), v128.or(i8x16.eq(v, SPLAT_AMP), i8x16.eq(v, SPLAT_GT)))));
}

function textRunLong(p: i32, n: i32): i32 {
  while (p < n) {
    const bits = textBits(p);
    if (bits != 0) { p += ctz(bits); return p < n ? p : n; }
    p += 16;
  }
  return n;
}

/** First index in [p, n) of a byte that is `a` or odd; n when none. */
@inline function run1(p: i32, n: i32, a: i32): i32 {
  const va = i8x16.splat(<i8>a);
  while (p < n) {
    const v = v128.load(<usize>p);
    const bits = i8x16.bitmask(v128.or(oddBytes(v), i8x16.eq(v, va)));
    if (bits != 0) { p += ctz(bits); return p < n ? p : n; }
    p += 16;
  }
  return n;
}

/** First index in [p, n) of byte `a`; n when none (a memchr). */
@inline function find(p: i32, n: i32, a: i32): i32 {
  const va = i8x16.splat(<i8>a);
  while (p < n) {
    const bits = i8x16.bitmask(i8x16.eq(v128.load(<usize>p), va));
    if (bits != 0) { p += ctz(bits); return p < n ? p : n; }
    p += 16;
  }
  return n;
}

// ---- UTF-8 and references (as protocol/README.md "Scan") ---------------------------------------

/** One UTF-8 encoded XML Char whose lead byte at p is >= 0x80: the index after it, or -1. */
function utf8Next(p: i32, n: i32): i32 {
  const c = at(p);
  if (c < 0xc2) return -1;
  if (c < 0xe0) {
    if (p + 1 >= n || (at(p + 1) & 0xc0) != 0x80) return -1;
    return p + 2;
  }
  if (c < 0xf0) {
    if (p + 2 >= n) return -1;
    const c1 = at(p + 1);
    const c2 = at(p + 2);
    if ((c1 & 0xc0) != 0x80 || (c2 & 0xc0) != 0x80) return -1;
    if (c == 0xe0 && c1 < 0xa0) return -1; // overlong
    if (c == 0xed && c1 >= 0xa0) return -1; // UTF-16 surrogate
    if (c == 0xef && c1 == 0xbf && c2 >= 0xbe) return -1; // U+FFFE, U+FFFF
    return p + 3;
  }
  if (c < 0xf5) {
    if (p + 3 >= n) return -1;
    const c1 = at(p + 1);
    if ((c1 & 0xc0) != 0x80 || (at(p + 2) & 0xc0) != 0x80 || (at(p + 3) & 0xc0) != 0x80) return -1;
    if (c == 0xf0 && c1 < 0x90) return -1; // overlong
    if (c == 0xf4 && c1 >= 0x90) return -1; // > U+10FFFF
    return p + 4;
  }
  return -1;
}

function isXmlChar(cp: i32): bool {
  if (cp < 0x20) return cp == TAB || cp == LF || cp == CR;
  if (cp <= 0xd7ff) return true;
  if (cp < 0xe000) return false;
  if (cp <= 0xfffd) return true;
  return cp >= 0x10000 && cp <= 0x10ffff;
}

/** A reference at p ('&'): one of the five predefined entities or a character reference to an XML
 *  Char. Returns the index after ';', or -1. */
function parseRef(p: i32, n: i32): i32 {
  let q = p + 1;
  if (q >= n) return -1;
  let c = at(q);
  if (c == HASH) {
    q++;
    let cp = 0;
    let digits = 0;
    if (q < n && at(q) == 0x78) {
      q++;
      for (; q < n; q++) {
        c = at(q);
        let v: i32 = 0;
        if (c >= 0x30 && c <= 0x39) v = c - 0x30;
        else if (c >= 0x61 && c <= 0x66) v = c - 0x57;
        else if (c >= 0x41 && c <= 0x46) v = c - 0x37;
        else break;
        cp = cp * 16 + v;
        if (cp > 0x10ffff) return -1;
        digits++;
      }
    } else {
      for (; q < n; q++) {
        c = at(q);
        if (c < 0x30 || c > 0x39) break;
        cp = cp * 10 + (c - 0x30);
        if (cp > 0x10ffff) return -1;
        digits++;
      }
    }
    if (digits == 0 || q >= n || at(q) != SEMI || !isXmlChar(cp)) return -1;
    return q + 1;
  }
  const rest = n - q;
  if (c == 0x6c || c == 0x67) { // lt gt
    if (rest < 3 || at(q + 1) != 0x74 || at(q + 2) != SEMI) return -1;
    return q + 3;
  }
  if (c == 0x61) { // amp apos
    if (rest >= 4 && at(q + 1) == 0x6d && at(q + 2) == 0x70 && at(q + 3) == SEMI) return q + 4;
    if (rest >= 5 && at(q + 1) == 0x70 && at(q + 2) == 0x6f && at(q + 3) == 0x73 && at(q + 4) == SEMI) return q + 5;
    return -1;
  }
  if (c == 0x71) { // quot
    if (rest >= 5 && at(q + 1) == 0x75 && at(q + 2) == 0x6f && at(q + 3) == 0x74 && at(q + 4) == SEMI) return q + 5;
  }
  return -1;
}

/** First index in [q, n) that is not an ASCII name character ([A-Za-z0-9_:.-]); n when none. */
@inline function asciiNameRun(q: i32, n: i32): i32 {
  // CoT names are short: the first block is straight-line code, a loop only for longer names
  const bits = nameStops(q);
  if (bits != 0) { q += ctz(bits); return q < n ? q : n; }
  return asciiNameRunLong(q + 16, n);
}

/** lanes of the 16 bytes at q that are not ASCII name characters. Nibble lookup: the high nibble
 *  selects which low nibbles are name characters in its row (NAME_HI / NAME_LO bits: 1 = low
 *  nibble d-e in row 2 ('-' '.'); 2 = 0-a in rows 3, 5, 7 (digits ':', P-Z, p-z); 4 = 1-f in rows
 *  4, 6 (A-O, a-o); 8 = f in row 5 ('_')) */
@inline function nameStops(q: i32): i32 {
  return nameStopsOf(v128.load(<usize>q));
}

@inline function nameStopsOf(v: v128): i32 {
  const hi = i8x16.swizzle(NAME_HI, v128.and(i16x8.shr_u(v, 4), NIB));
  return i8x16.bitmask(i8x16.eq(v128.and(hi, i8x16.swizzle(NAME_LO, v128.and(v, NIB))), ZERO));
}

function asciiNameRunLong(q: i32, n: i32): i32 {
  while (q < n) {
    const bits = nameStops(q);
    if (bits != 0) { q += ctz(bits); return q < n ? q : n; }
    q += 16;
  }
  return n;
}

/** Name characters from q; the index after the name, or -1 for bad UTF-8. */
@inline function skipName(q: i32, n: i32): i32 {
  for (;;) {
    q = asciiNameRun(q, n);
    if (at(q) < 0x80 || q >= n) return q; // bytes past n are readable
    q = utf8Next(q, n);
    if (q < 0) return -1;
  }
  return -1; // not reached
}

// ---- which element / field ---------------------------------------------------------------------
// (The per-tag helpers are inlined into the pass: calls in V8's wasm code cost spills and moves,
// ~7% of the core on CoT.)
// Names are compared a word at a time; reading a few bytes past a short name is safe (see top).

let seenContact: bool = false;
let seenGroup: bool = false;
let hasLink: bool = false;

@inline function fieldOf(kind: i32, s: i32, len: i32): i32 {
  const w = at4(s);
  switch (kind) {
    case K_EVENT:
      if (len == 3) {
        const w3 = w & M3;
        if (w3 == W_UID) return F_UID;
        if (w3 == W_HOW) return F_HOW;
      } else if (len == 4) {
        if (w == W_TYPE) return F_TYPE;
        if (w == W_TIME) return F_TIME;
      } else if (len == 5) {
        const c4 = at(s + 4);
        if (w == W_STAR && c4 == 0x74) return F_START;
        if (w == W_STAL && c4 == 0x65) return F_STALE;
      } else if (len == 7) {
        if (w == W_VERS && (at4(s + 3) == 0x6e6f6973 /* "sion" */)) return F_VERSION;
      }
      return -1;
    case K_POINT:
      if (len == 3) {
        const w3 = w & M3;
        if (w3 == W_LAT) return F_LAT;
        if (w3 == W_LON) return F_LON;
        if (w3 == W_HAE) return F_HAE;
      } else if (len == 2) {
        const w2 = w & 0xffff;
        if (w2 == 0x6563 /* ce */) return F_CE;
        if (w2 == 0x656c /* le */) return F_LE;
      }
      return -1;
    case K_CONTACT:
      if (len == 8) {
        const w1 = at4(s + 4);
        if (w == W_CALL && w1 == W_SIGN) return F_CALLSIGN;
        if (w == W_ENDP && w1 == W_OINT) return F_ENDPOINT;
      }
      return -1;
    case K_GROUP:
      if (len == 4) {
        if (w == W_NAME) return F_GNAME;
        if (w == W_ROLE) return F_GROLE;
      }
      return -1;
    case K_LINK:
      if (len == 3 && (w & M3) == W_UID) return F_LINK;
      return -1;
    case K_DEST: // 0 = callsign, 3 = uid: offsets into the dest's six ints
      if (len == 8 && w == W_CALL && at4(s + 4) == W_SIGN) return 0;
      if (len == 3 && (w & M3) == W_UID) return 3;
      return -1;
  }
  return -1;
}

@inline function kindOf(parent: i32, s: i32, len: i32): i32 {
  const w = at4(s);
  switch (parent) {
    case K_EVENT:
      if (len == 5 && w == W_POIN && at(s + 4) == 0x74) return fStart(F_LAT) == -2 ? K_POINT : K_OTHER;
      if (len == 6 && w == W_DETA && at2(s + 4) == 0x6c69 /* "il" */) return K_DETAIL;
      return K_OTHER;
    case K_DETAIL:
      if (len == 7) {
        if (w == W_CONT && at4(s + 3) == W_TACT) return seenContact ? K_OTHER : K_CONTACT;
        if (w == W___GR && at4(s + 3) == W_ROUP) return seenGroup ? K_OTHER : K_GROUP;
      } else if (len == 5) {
        if (w == W_MART && at(s + 4) == 0x69) return K_MARTI;
      } else if (len == 4) {
        if (w == W_LINK) return hasLink ? K_OTHER : K_LINK;
      }
      return K_OTHER;
    case K_MARTI:
      if (len == 4 && w == W_DEST) return K_DEST;
      return K_OTHER;
  }
  return K_OTHER;
}

@inline function isEventName(s: i32, len: i32): bool {
  return len == 5 && at4(s) == W_EVEN && at(s + 4) == 0x74;
}

// ---- the pass ----------------------------------------------------------------------------------

/** Scans the <event> element in [s, n). framing: the element starts at s and the scan stops where
 *  it closes (the framer's fast path); else the range is one whole frame (prolog, element,
 *  epilog). Returns the end, or -1 with the error recorded. */
function scanBytes(s: i32, n: i32, framing: bool): i32 {
  // the field slots (NF = 17): starts -2 (absent), flags 0, a vector store for four at a time
  const absent = i32x4.splat(-2);
  v128.store(<usize>FS, absent); v128.store(<usize>(FS + 16), absent); v128.store(<usize>(FS + 32), absent);
  v128.store(<usize>(FS + 48), absent); store<i32>(<usize>(FS + 64), -2);
  v128.store(<usize>FF, ZERO); v128.store(<usize>(FF + 16), ZERO); v128.store(<usize>(FF + 32), ZERO);
  v128.store(<usize>(FF + 48), ZERO); store<i32>(<usize>(FF + 64), 0);
  ndests = 0;
  nmore = 0;
  seenContact = seenGroup = hasLink = false;
  let martiStart = -1;
  let martiEnd = -1;

  let p = framing ? s : skipMisc(s, n, s);
  if (p < 0) return -1;
  if (p >= n) return fail(R_EMPTY, p);
  if (at(p) != LT) return fail(R_TEXT_OUTSIDE, p);

  let depth = 0;
  let martiDepth = -1;
  // Invariant at the top of the loop: at(p) == '<'.
  for (;;) {
    const c1 = atOr(p + 1, n);
    if (c1 == SLASH) {
      // end tag: must close the element on top of the stack
      const e = stack + (depth - 1) * 8;
      const ns = load<i32>(<usize>e);
      const len = load<i32>(<usize>(e + 4)) >>> 4;
      let q = p + 2;
      if (q + len > n) return fail(R_END_TAG, p);
      let i = 0;
      for (; i + 4 <= len; i += 4) if (at4(q + i) != at4(ns + i)) return fail(R_END_TAG, p);
      for (; i < len; i++) if (at(q + i) != at(ns + i)) return fail(R_END_TAG, p);
      q += len;
      let c = atOr(q, n);
      while (isWs(c)) c = atOr(++q, n);
      if (c != GT) return fail(R_END_TAG, p);
      p = q + 1;
      depth--;
      if (depth == martiDepth) {
        if (martiEnd < 0) martiEnd = p;
        else pushMore(p);
        martiDepth = -1;
      }
      if (depth == 0) break;
    } else if (c1 == BANG) {
      const ms = p;
      if (p + 3 < n && at(p + 2) == DASH && at(p + 3) == DASH) {
        p = skipComment(p + 4, n);
      } else if (p + 8 < n && at(p + 2) == LSQB && at4(p + 3) == 0x54414443 /* CDAT */ && at(p + 7) == 0x41 &&
        at(p + 8) == LSQB) {
        p = skipCdata(p + 9, n);
      } else {
        return fail(R_DOCTYPE, p);
      }
      if (p < 0) return -1;
      const x = endTagIn(ms, p);
      if (x >= 0) return fail(R_END_IN_MARKUP, x);
    } else if (c1 == QM) {
      const ms = p;
      p = skipPi(p, n, false);
      if (p < 0) return -1;
      const x = endTagIn(ms, p);
      if (x >= 0) return fail(R_END_IN_MARKUP, x);
    } else {
      // start tag: name
      const tagStart = p;
      let q = p + 1;
      if (q >= n || (at(T_NAME + at(q)) & NAME_START) == 0) return fail(R_TAG_NAME, q);
      const ns = q;
      q = skipName(q, n);
      if (q < 0) return fail(R_UTF8, ns);
      const nlen = q - ns;
      let kind: i32;
      if (depth == 0) {
        if (!isEventName(ns, nlen)) return fail(R_NOT_EVENT, ns);
        kind = K_EVENT;
      } else {
        const parent = load<i32>(<usize>(stack + (depth - 1) * 8 + 4)) & 15;
        kind = parent == K_OTHER ? K_OTHER : kindOf(parent, ns, nlen);
        if (kind == K_POINT) store<i32>(<usize>(FS + F_LAT * 4), -1); // -1: the element exists
        else if (kind == K_CONTACT) seenContact = true;
        else if (kind == K_GROUP) seenGroup = true;
        else if (kind == K_LINK) hasLink = true;
        else if (kind == K_DEST) {
          if (ndests == destsCap) {
            const d = alloc(destsCap * 48);
            memory.copy(<usize>d, <usize>dests, <usize>(destsCap * 24));
            dests = d;
            destsCap *= 2;
          }
          const o = dests + ndests * 24;
          store<i32>(<usize>o, -1);
          store<i32>(<usize>(o + 12), -1);
          ndests++;
        }
      }
      q = scanAttributes(q, n, kind, tagStart);
      if (q < 0) return -1;
      const selfClose = at(q - 2) == SLASH;
      // A nested <event>…</event> would end the frame early for the framer: never well-formed CoT.
      if (depth > 0 && !selfClose && isEventName(ns, nlen)) return fail(R_NESTED_EVENT, tagStart);
      if (kind == K_MARTI) {
        if (martiStart < 0) {
          martiStart = tagStart;
          if (selfClose) martiEnd = q;
        } else {
          pushMore(tagStart);
          if (selfClose) pushMore(q);
        }
        if (!selfClose) martiDepth = depth;
      }
      p = q;
      if (selfClose) {
        if (depth == 0) break;
      } else {
        if (depth == stackCap) {
          const st = alloc(stackCap * 16);
          memory.copy(<usize>st, <usize>stack, <usize>(stackCap * 8));
          stack = st;
          stackCap *= 2;
        }
        const e = stack + depth * 8;
        store<i32>(<usize>e, ns);
        store<i32>(<usize>(e + 4), (nlen << 4) | kind);
        depth++;
      }
    }
    // character data up to the next '<' (CoT: usually none or one newline)
    if (at2(p) == 0x3c0a && p + 1 < n) p++; // a line break between elements, the usual CoT
    for (;;) {
      if (p < n && at(p) == LT) break;
      p = textRun(p, n);
      if (p >= n) {
        return fail(R_UNCLOSED, load<i32>(<usize>(stack + (depth - 1) * 8)) - 1);
      }
      const c = at(p);
      if (c == LT) break;
      if (c == AMP) {
        const q = parseRef(p, n);
        if (q < 0) return fail(R_REFERENCE, p);
        p = q;
      } else if (c >= 0x80) {
        const q = utf8Next(p, n);
        if (q < 0) return fail(R_UTF8, p);
        p = q;
      } else if (c == GT) {
        if (at(p - 1) == RSQB && at(p - 2) == RSQB) return fail(R_CDATA_END, p - 2);
        p++;
      } else {
        return fail(R_CHAR, p);
      }
    }
  }
  // the root is closed at p
  const us = fStart(F_UID);
  if (us < 0 || load<i32>(<usize>(FE + F_UID * 4)) == us) return fail(R_NO_UID, s);
  const ts = fStart(F_TYPE);
  if (ts < 0 || load<i32>(<usize>(FE + F_TYPE * 4)) == ts) return fail(R_NO_TYPE, s);
  setMisc(M_NDESTS, ndests);
  setMisc(M_DESTS, dests);
  setMisc(M_MSTART, martiStart);
  setMisc(M_MEND, martiEnd);
  setMisc(M_NMORE, nmore);
  setMisc(M_MORE, more);
  setMisc(M_LINK, hasLink ? 1 : 0);
  // whether any lazily read field needs decoding (then the host makes them all at once)
  let lazyFlags = 0;
  for (let f = F_HOW; f <= F_LE; f++) lazyFlags |= load<i32>(<usize>(FF + f * 4));
  setMisc(M_LAZYF, lazyFlags | load<i32>(<usize>(FF + F_GNAME * 4)) | load<i32>(<usize>(FF + F_GROLE * 4)));
  const ss = fStart(F_STALE);
  store<f64>(<usize>STALE_MS, ss >= 0 && load<i32>(<usize>(FF + F_STALE * 4)) == 0
    ? isoMs(ss, load<i32>(<usize>(FE + F_STALE * 4))) : NaN);
  const ts2 = fStart(F_TIME);
  store<f64>(<usize>TIME_MS, ts2 >= 0 && load<i32>(<usize>(FF + F_TIME * 4)) == 0
    ? isoMs(ts2, load<i32>(<usize>(FE + F_TIME * 4))) : NaN);
  if (framing) return p;
  const end = skipMisc(p, n, s);
  if (end < 0) return -1;
  if (end < n) return fail(R_TRAILING, end);
  return p;
}

/** Attributes of a start tag from q (just after the name) through '>' or '/>'. Records the
 *  ranges of interesting ones. Returns the index after the tag or -1. */
@inline function scanAttributes(q: i32, n: i32, kind: i32, tagStart: i32): i32 {
  let nattr = 0;
  let sig = 0;
  for (;;) {
    let c = atOr(q, n);
    if (c == GT) return q + 1;
    let ws = false;
    while (isWs(c)) { ws = true; c = atOr(++q, n); }
    if (c == GT) return q + 1;
    if (c == SLASH) {
      if (q + 1 < n && at(q + 1) == GT) return q + 2;
      return fail(q + 1 < n ? R_BAD_SLASH : R_TAG_UNTERMINATED, q);
    }
    if (c < 0) return fail(R_TAG_UNTERMINATED, tagStart);
    if (!ws) return fail(R_ATTR_SPACE, q);
    if ((at(T_NAME + c) & NAME_START) == 0) return fail(R_ATTR_NAME, q);
    // name
    const as = q;
    let ae = -1;
    let ve = -1;
    let flags = 0;
    if (c < 0x80) {
      // The usual CoT attribute, name="value" within 16 bytes each, is read off the vectors: where
      // the name stops, whether it stops at =" and where the value's first stop is its closing
      // quote, as bits of masks made from the same loads (no byte load that waits for the
      // position). Anything else takes the general path below, from where the name stops.
      // The position comes from compares only (the first =" and the value's first quote, '<',
      // '&', control or byte >= 0x80); the name's characters are checked beside it, as a branch.
      const v = v128.load(<usize>(q + 1));
      const stops = nameStopsOf(v);
      const eqq = i8x16.bitmask(i8x16.eq(v, SPLAT_EQ)) & (i8x16.bitmask(i8x16.eq(v, SPLAT_DQ)) >> 1);
      const k = ctz(eqq); // 32 when none
      if (eqq != 0 && (stops & ((1 << k) - 1)) == 0 && q + 2 + k < n) {
        ae = q + 1 + k;
        const vs = ae + 2;
        let w = v128.load(<usize>vs);
        let wq = i8x16.eq(w, SPLAT_DQ);
        let vstops = i8x16.bitmask(v128.or(v128.or(wq, i8x16.eq(w, SPLAT_LT)), v128.or(i8x16.eq(w, SPLAT_AMP), i8x16.lt_s(w, SPLAT_20))));
        let quotes = i8x16.bitmask(wq);
        if (vstops == 0) { // a longer value (CoT times, versions): one more block
          w = v128.load(<usize>(vs + 16));
          wq = i8x16.eq(w, SPLAT_DQ);
          vstops = i8x16.bitmask(v128.or(v128.or(wq, i8x16.eq(w, SPLAT_LT)), v128.or(i8x16.eq(w, SPLAT_AMP), i8x16.lt_s(w, SPLAT_20)))) << 16;
          quotes = i8x16.bitmask(wq) << 16;
        }
        const j = ctz(vstops);
        if (vstops != 0 && (quotes >> j & 1) != 0 && vs + j < n) ve = vs + j;
        else q = ae;
      } else if (stops != 0) {
        q += 1 + ctz(stops);
        if (q > n) q = n;
      } else {
        q = asciiNameRunLong(q + 17, n);
      }
    }
    let vs: i32;
    if (ve >= 0) {
      vs = ae + 2;
      q = ve;
    } else {
      if (ae < 0) {
        if (at(q) >= 0x80 && q < n) { // bytes past n are readable
          q = skipName(q, n);
          if (q < 0) return fail(R_UTF8, as);
        }
        ae = q;
        c = atOr(q, n);
        if (c != EQ) {
          while (isWs(c)) c = atOr(++q, n);
          if (c != EQ) return fail(c < 0 ? R_TAG_UNTERMINATED : R_ATTR_EQ, c < 0 ? tagStart : q);
        }
        c = atOr(++q, n);
        while (isWs(c)) c = atOr(++q, n);
        if (c != DQ && c != SQ) return fail(c < 0 ? R_TAG_UNTERMINATED : R_ATTR_QUOTE, c < 0 ? tagStart : q);
      } else {
        c = DQ;
        q = ae + 1; // the quote
      }
      // value
      vs = ++q;
      for (;;) {
        q = valueRun(q, n, c);
        if (q >= n) return fail(R_ATTR_UNTERMINATED, vs - 1);
        const v = at(q);
        if (v == c) break;
        if (v == AMP) {
          q = parseRef(q, n);
          if (q < 0) return fail(R_REFERENCE, vs);
          flags |= V_DECODE;
        } else if (v >= 0x80) {
          q = utf8Next(q, n);
          if (q < 0) return fail(R_UTF8, vs);
          flags |= V_UTF8;
        } else if (v == LT) {
          return fail(R_ATTR_LT, q);
        } else if (v == TAB || v == LF || v == CR) {
          flags |= V_DECODE;
          q++;
        } else {
          return fail(R_CHAR, q);
        }
      }
    }
    ve = q++;
    const alen = ae - as;
    const f = kind != K_OTHER ? fieldOf(kind, as, alen) : -1;
    if (f >= 0) {
      // a value the header reads: each slot is filled by one element per frame, so a slot already
      // set is this element's duplicate (and only a name like it can be one: no general check)
      const o = kind == K_DEST ? dests + (ndests - 1) * 24 + f * 4 : FS + f * 4;
      if (load<i32>(<usize>o) >= 0) return fail(R_ATTR_DUPLICATE, as);
      if (kind == K_DEST) {
        store<i32>(<usize>o, vs);
        store<i32>(<usize>(o + 4), ve);
        store<i32>(<usize>(o + 8), flags);
      } else {
        store<i32>(<usize>o, vs);
        store<i32>(<usize>(FE + f * 4), ve);
        store<i32>(<usize>(FF + f * 4), flags);
      }
      continue;
    }
    // other names: a 32-bit signature of (length, first, last byte) rules most duplicates out at
    // once; else pairwise for the usual handful, a hash table beyond that (linear for hostile tags)
    const bit = 1 << ((alen * 7 + at(as) + at(ae - 1) * 3) & 31);
    const maybeDup = (sig & bit) != 0;
    sig |= bit;
    if (nattr < ATTR_LINEAR_MAX) {
      if (maybeDup) for (let j = 0; j < nattr; j++) {
        const js = load<i32>(<usize>(ATTR_S + j * 4));
        if (load<i32>(<usize>(ATTR_E + j * 4)) - js != alen) continue;
        if (sameBytes(js, as, alen)) return fail(R_ATTR_DUPLICATE, as);
      }
      store<i32>(<usize>(ATTR_S + nattr * 4), as);
      store<i32>(<usize>(ATTR_E + nattr * 4), ae);
    } else {
      if (nattr == ATTR_LINEAR_MAX) {
        hashReset();
        for (let j = 0; j < nattr; j++) hashAdd(load<i32>(<usize>(ATTR_S + j * 4)), load<i32>(<usize>(ATTR_E + j * 4)));
      }
      if (!hashAdd(as, ae)) return fail(R_ATTR_DUPLICATE, as);
    }
    nattr++;
  }
  return -1; // not reached
}

function sameBytes(a: i32, b: i32, len: i32): bool {
  let k = 0;
  for (; k + 4 <= len; k += 4) if (at4(a + k) != at4(b + k)) return false;
  for (; k < len; k++) if (at(a + k) != at(b + k)) return false;
  return true;
}

// ---- duplicate attributes of elements with many: open addressing over name ranges --------------
// Seeded per process by the host (init); a probe run longer than MAX_PROBE (only crafted
// collisions get there) re-seeds and rebuilds the table; after MAX_RESEED rebuilds in one element
// the element is refused as a duplicate (protocol/README.md: never quadratic).
const MAX_PROBE: i32 = 64;
const MAX_RESEED: i32 = 8;
let seed: u32 = 0x9e3779b9;
let rng: u64 = 0x853c49e6748fea9b;
let table: i32 = HASH0; // slots: i32 name start + 1 (0 = empty), i32 name end
let cap: i32 = HASH0_CAP;
let count: i32 = 0;
let reseeds: i32 = 0;

export function setSeed(lo: u32, hi: u32): void {
  rng = (<u64>hi << 32) | <u64>lo | 1;
  seed = lo | 1;
}

function nextSeed(): void {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  seed = <u32>(rng >> 16) | 1;
}

function hash(s: i32, e: i32): u32 {
  let h: u32 = seed ^ <u32>(e - s);
  for (let i = s; i < e; i++) h = (h ^ <u32>at(i)) * 0x01000193;
  h ^= h >> 15;
  h *= 0x2c1b3c6d;
  return h ^ (h >> 13);
}

function hashReset(): void {
  table = HASH0;
  cap = HASH0_CAP;
  count = 0;
  reseeds = 0;
  memory.fill(<usize>HASH0, 0, <usize>(HASH0_CAP * 8));
}

/** Adds the name [s, e); false if the element already has it. */
function hashAdd(s: i32, e: i32): bool {
  if ((count + 1) * 2 > cap) rehash(cap * 2);
  for (;;) {
    const r = probe(s, e);
    if (r == 1) return true;
    if (r == 0) return false;
    // crafted collisions: a new seed, the same size
    if (++reseeds > MAX_RESEED) return false;
    nextSeed();
    rehash(cap);
  }
  return false; // not reached
}

/** 1: inserted; 0: present; -1: probe run too long */
function probe(s: i32, e: i32): i32 {
  const mask = cap - 1;
  let i = <i32>hash(s, e) & mask;
  const len = e - s;
  for (let k = 0; ; k++) {
    const slot = table + i * 8;
    const st = load<i32>(<usize>slot);
    if (st == 0) {
      store<i32>(<usize>slot, s + 1);
      store<i32>(<usize>(slot + 4), e);
      count++;
      return 1;
    }
    if (load<i32>(<usize>(slot + 4)) - (st - 1) == len && sameBytes(st - 1, s, len)) return 0;
    if (k == MAX_PROBE) return -1;
    i = (i + k + 1) & mask; // triangular probing: visits every slot
  }
  return -1; // not reached
}

function rehash(newCap: i32): void {
  const old = table, oldCap = cap;
  table = alloc(newCap * 8);
  memory.fill(<usize>table, 0, <usize>(newCap * 8));
  cap = newCap;
  count = 0;
  for (let j = 0; j < oldCap; j++) {
    const st = load<i32>(<usize>(old + j * 8));
    if (st == 0) continue;
    // distinct names: the probe cannot find a duplicate; a long run here just keeps going
    const e = load<i32>(<usize>(old + j * 8 + 4));
    const mask = cap - 1;
    let i = <i32>hash(st - 1, e) & mask;
    for (let k = 0; load<i32>(<usize>(table + i * 8)) != 0; k++) i = (i + k + 1) & mask;
    store<i32>(<usize>(table + i * 8), st);
    store<i32>(<usize>(table + i * 8 + 4), e);
    count++;
  }
}

// ---- comments, CDATA, PIs, prolog/epilog -------------------------------------------------------

/**
 * The body of a comment, CDATA section or PI from p: the next `stop` byte (its position), past
 * ordinary runs and checked UTF-8 sequences; n when the data ends first; -1 (fail) on invalid
 * UTF-8 (reported at `start`) or a character XML does not allow. The callers read the terminator.
 */
@inline
function runTo(p: i32, n: i32, stop: i32, start: i32): i32 {
  for (;;) {
    p = run1(p, n, stop);
    if (p >= n) return n;
    const c = at(p);
    if (c == stop) return p;
    if (c < 0x80) return fail(R_CHAR, p);
    p = utf8Next(p, n);
    if (p < 0) return fail(R_UTF8, start);
  }
  return -1; // not reached
}

function skipComment(p: i32, n: i32): i32 {
  // p is just after "<!--"; "--" may only appear as part of the closing "-->"
  const start = p - 4;
  for (;;) {
    p = runTo(p, n, DASH, start);
    if (p < 0) return -1;
    if (p >= n) return fail(R_COMMENT, start);
    if (p + 1 < n && at(p + 1) == DASH) {
      if (p + 2 < n && at(p + 2) == GT) return p + 3;
      return fail(R_COMMENT, p);
    }
    p++;
  }
  return -1; // not reached
}

function skipCdata(p: i32, n: i32): i32 {
  // p is just after "<![CDATA["
  const start = p - 9;
  for (;;) {
    p = runTo(p, n, RSQB, start);
    if (p < 0) return -1;
    if (p >= n) return fail(R_CDATA, start);
    if (p + 2 < n && at(p + 1) == RSQB && at(p + 2) == GT) return p + 3;
    p++;
  }
  return -1; // not reached
}

/**
 * Where the bytes `</event>` are in [s, e) (a comment, CDATA section or PI inside the event), or
 * -1. TAK clients cut their stream at those bytes wherever they are (ATAK's commo searches for
 * "</event>", node-tak and pytak likewise), so such an event would reach them cut in two, and
 * what follows the inner end tag could pass for an event of its own — one the server never
 * checked (another client's uid, say). Only inside comments, CDATA and PIs can the bytes occur
 * in a well-formed event ('<' is markup everywhere else), and CoT rarely holds any of them.
 */
function endTagIn(s: i32, e: i32): i32 {
  let p = find(s, e, LT);
  while (p + 8 <= e) {
    if (at(p + 1) == SLASH && at4(p + 2) == W_EVEN && at(p + 6) == 0x74 && at(p + 7) == GT) return p;
    p = find(p + 1, e, LT);
  }
  return -1;
}

/** A processing instruction at p ('<?'). `decl` allows the XML declaration. */
function skipPi(p: i32, n: i32, decl: bool): i32 {
  const start = p;
  p += 2;
  if (p >= n || (at(T_NAME + at(p)) & NAME_START) == 0) return fail(R_PI, start);
  const ts = p;
  p = skipName(p, n);
  if (p < 0) return fail(R_UTF8, ts);
  if (p - ts == 3 && (at(ts) | 0x20) == 0x78 && (at(ts + 1) | 0x20) == 0x6d && (at(ts + 2) | 0x20) == 0x6c && !decl) {
    return fail(R_XML_DECL, start);
  }
  if (p < n && at(p) == QM) {
    if (p + 1 < n && at(p + 1) == GT) return p + 2;
    return fail(R_PI, start);
  }
  if (p >= n || !isWs(at(p))) return fail(R_PI, start);
  for (;;) {
    p = runTo(p, n, QM, start);
    if (p < 0) return -1;
    if (p >= n) return fail(R_PI, start);
    if (p + 1 < n && at(p + 1) == GT) return p + 2;
    p++;
  }
  return -1; // not reached
}

/** Prolog / epilog: white space, comments and PIs (the XML declaration only at the frame start s). */
function skipMisc(p: i32, n: i32, s: i32): i32 {
  while (p < n) {
    const c = at(p);
    if (isWs(c)) { p++; continue; }
    if (c != LT || p + 1 >= n) return p;
    const c1 = at(p + 1);
    if (c1 == QM) {
      p = skipPi(p, n, p == s);
    } else if (c1 == BANG) {
      if (p + 3 < n && at(p + 2) == DASH && at(p + 3) == DASH) p = skipComment(p + 4, n);
      else return fail(R_DOCTYPE, p);
    } else {
      return p;
    }
    if (p < 0) return -1;
  }
  return p;
}

// ---- times -------------------------------------------------------------------------------------

@inline function d2(p: i32): i32 {
  const x = at(p) - 0x30, y = at(p + 1) - 0x30;
  return <u32>x <= 9 && <u32>y <= 9 ? x * 10 + y : -1;
}

@inline function floorDiv(a: i32, b: i32): i32 {
  const q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/** Date.parse() of [s, e) when it is `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` with a day <= 28 (where
 *  the result is certain); NaN otherwise, and the host asks Date.parse. */
export function isoMs(s: i32, e: i32): f64 {
  const len = e - s;
  if (<u32>(len - 20) > 10) return NaN; // up to 9 fractional digits (.NET writes 7); Date.parse keeps 3
  // the separators, then the 14 digits, each check folded into one flag (one branch, not 20)
  const sep = (at(s + 4) ^ 0x2d) | (at(s + 7) ^ 0x2d) | (at(s + 10) ^ 0x54) | (at(s + 13) ^ 0x3a) | (at(s + 16) ^ 0x3a) | (at(e - 1) ^ 0x5a);
  const y0 = at(s) - 0x30, y1 = at(s + 1) - 0x30, y2 = at(s + 2) - 0x30, y3 = at(s + 3) - 0x30;
  const m0 = at(s + 5) - 0x30, m1 = at(s + 6) - 0x30, d0 = at(s + 8) - 0x30, d1 = at(s + 9) - 0x30;
  const h0 = at(s + 11) - 0x30, h1 = at(s + 12) - 0x30, i0 = at(s + 14) - 0x30, i1 = at(s + 15) - 0x30;
  const s0 = at(s + 17) - 0x30, s1 = at(s + 18) - 0x30;
  if (sep != 0 ||
    (<u32>y0 > 9) | (<u32>y1 > 9) | (<u32>y2 > 9) | (<u32>y3 > 9) | (<u32>m0 > 9) | (<u32>m1 > 9) | (<u32>d0 > 9) |
    (<u32>d1 > 9) | (<u32>h0 > 9) | (<u32>h1 > 9) | (<u32>i0 > 9) | (<u32>i1 > 9) | (<u32>s0 > 9) | (<u32>s1 > 9)) return NaN;
  const mo = m0 * 10 + m1, d = d0 * 10 + d1, h = h0 * 10 + h1, mi = i0 * 10 + i1, sec = s0 * 10 + s1;
  if (<u32>(mo - 1) > 11 | <u32>(d - 1) > 27 | h > 23 | mi > 59 | sec > 59) return NaN;
  let ms = 0;
  if (len > 20) {
    if (at(s + 19) != 0x2e || len == 21) return NaN;
    let scale = 100;
    for (let p = s + 20; p < e - 1; p++) {
      const c = at(p) - 0x30;
      if (<u32>c > 9) return NaN;
      ms += c * scale;
      scale /= 10;
    }
  }
  // days from 1970-01-01 of the proleptic Gregorian date (H. Hinnant's days_from_civil)
  let y = y0 * 1000 + y1 * 100 + y2 * 10 + y3;
  if (mo <= 2) y--;
  const era = floorDiv(y, 400);
  const yoe = y - era * 400;
  const doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const days = era * 146097 + doe - 719468;
  return <f64>days * 86400000.0 + <f64>(h * 3600000 + mi * 60000 + sec * 1000 + ms);
}

// ---- interned strings ----------------------------------------------------------------------------
// The host keeps one JS string per slot of this table, so the values the router reads on every
// frame (uid, type, callsign, endpoint, link uid — the same on every SA a device sends) cost an
// array load instead of a string made from bytes. Direct-mapped by a seeded hash of the bytes
// (a string is a function of its bytes, whatever decoding they need): no probe chains, a
// colliding value just replaces the slot, so crafted input costs misses, never more work. A slot
// is [i32 hash, i32 length + 1, bytes]; on a miss the core writes hash and bytes with length 0
// (not valid) and the host validates the slot once it has stored the string (protocol/scan.ts):
// a slot never matches bytes its string was not made from.
const INTERN: i32 = 65536;
const ISLOTS: i32 = 1024;
const ISLOT: i32 = 128;
const IMAX: i32 = ISLOT - 8;
/** M_IDS value: the field is absent or too long to intern */
const I_NONE: i32 = 0x40000000;

/** a hash of [s, len) from its first, middle and last word (a slot only needs to be spread
 *  well; the bytes are compared in full on a hit) */
@inline function internHash(s: i32, len: i32): u32 {
  let h: u32 = seed ^ (<u32>len * 0x9e3779b1);
  if (len >= 4) {
    h ^= <u32>at4(s) * 0x85ebca6b;
    h ^= <u32>at4(s + len - 4) * 0xc2b2ae35;
    if (len > 8) h ^= <u32>at4(s + (len >> 1) - 2) * 0x27d4eb2f;
  } else {
    h ^= (<u32>at4(s) & (0xffffff >> <u32>((3 - len) * 8))) * 0x85ebca6b;
  }
  h ^= h >> 15;
  h *= 0x2c1b3c6d;
  return h ^ (h >> 13);
}

/** [a, a + len) and [b, b + len) hold the same bytes (16 at a time; both may be read past len) */
@inline function sameRun(a: i32, b: i32, len: i32): bool {
  let k = 0;
  for (; k + 16 <= len; k += 16) {
    if (i8x16.bitmask(i8x16.eq(v128.load(<usize>(a + k)), v128.load(<usize>(b + k)))) != 0xffff) return false;
  }
  if (k == len) return true;
  const m = (1 << (len - k)) - 1;
  return (i8x16.bitmask(i8x16.eq(v128.load(<usize>(a + k)), v128.load(<usize>(b + k)))) & m) == m;
}

/** Slot of field f's value: its index when the table has it, ~index after writing it there (the
 *  host makes the string and validates the slot), I_NONE when absent or too long. */
@inline function intern(f: i32): i32 {
  const s = fStart(f);
  if (s < 0) return I_NONE;
  const len = load<i32>(<usize>(FE + f * 4)) - s;
  if (len > IMAX) return I_NONE;
  const h = internHash(s, len);
  const i = <i32>(h & <u32>(ISLOTS - 1));
  const slot = INTERN + i * ISLOT;
  if (load<u32>(<usize>slot) == h && load<i32>(<usize>(slot + 4)) == len + 1 && sameRun(slot + 8, s, len)) return i;
  store<u32>(<usize>slot, h);
  store<i32>(<usize>(slot + 4), 0);
  memory.copy(<usize>(slot + 8), <usize>s, <usize>len);
  return ~i;
}

/** after a frame has passed every check: the slots of the eagerly read strings */
function internAll(): void {
  setMisc(M_IDS, intern(F_UID));
  setMisc(M_IDS + 1, intern(F_TYPE));
  setMisc(M_IDS + 2, intern(F_CALLSIGN));
  setMisc(M_IDS + 3, intern(F_ENDPOINT));
  setMisc(M_IDS + 4, intern(F_LINK));
}

// ---- the lazily read values ----------------------------------------------------------------------
// What nothing on the hot path reads (event how time start stale version, __group name role, the
// point's coordinates) is copied, when all of it is plain ASCII (M_LAZYF 0) and the frame small,
// into the host's staging area as one record: each of the twelve values followed by 0x01, or 0x02
// alone when absent, then 0x01 or 0x02 for whether the point element exists. A plain value holds no
// control character, so the marks are unambiguous. The host makes one string of many records
// (protocol/scan.ts), so a header keeps its lazy values for the price of ~150 bytes of string.
const RECORD_FRAME_MAX: i32 = 4096;

@inline function copyValue(d: i32, f: i32): i32 {
  const s = fStart(f);
  if (s < 0) { store<u8>(<usize>d, 2); return d + 1; }
  const len = load<i32>(<usize>(FE + f * 4)) - s;
  // 16 bytes at a time: the source has slack after it, the staging area after the record
  for (let k = 0; k < len; k += 16) v128.store(<usize>(d + k), v128.load(<usize>(s + k)));
  store<u8>(<usize>(d + len), 1);
  return d + len + 1;
}

/** The record of frame [s, e) at d when it qualifies; its length in M_RECLEN, else -1. */
function record(d: i32, s: i32, e: i32): void {
  if (d == 0 || e - s > RECORD_FRAME_MAX || misc(M_LAZYF) != 0) { setMisc(M_RECLEN, -1); return; }
  const d0 = d;
  d = copyValue(d, F_HOW);
  d = copyValue(d, F_TIME);
  d = copyValue(d, F_START);
  d = copyValue(d, F_STALE);
  d = copyValue(d, F_VERSION);
  d = copyValue(d, F_GNAME);
  d = copyValue(d, F_GROLE);
  d = copyValue(d, F_LAT);
  d = copyValue(d, F_LON);
  d = copyValue(d, F_HAE);
  d = copyValue(d, F_CE);
  d = copyValue(d, F_LE);
  store<u8>(<usize>d, fStart(F_LAT) == -2 ? 2 : 1);
  setMisc(M_RECLEN, d + 1 - d0);
}

// ---- entry points --------------------------------------------------------------------------------

@inline function begin(scratch: i32): void {
  brk = scratch;
  stack = STACK0; stackCap = STACK0_CAP;
  dests = DESTS0; destsCap = DESTS0_CAP;
  more = MORE0; moreCap = MORE0_CAP;
}

/** One whole frame in [s, n). Returns its end (n) or -1; the reason and offset are in MISC. The
 *  record of its lazily read values goes to `rec` (0: none; see record()). */
export function scanFrame(s: i32, n: i32, scratch: i32, rec: i32): i32 {
  begin(scratch);
  const e = scanBytes(s, n, false);
  if (e < 0) { setMisc(M_ERR, errReason); setMisc(M_ERROFF, errOffset); }
  else { internAll(); record(rec, s, e); }
  return e;
}

/** The framer's fast path, between frames at p in a chunk ending at n: skips white space and
 *  complete <?…?> (as the framer's OUT state does) and, at `<event` followed by white space, '>' or
 *  '/', scans the element within the frame limit `max`. Returns 1 with M_POS = its start and
 *  M_END = its end when that is a complete well-formed event; else 0 with M_POS where the exact
 *  JS lexer takes over (in its OUT state) and M_ERR the reason the element failed (0: none
 *  scanned). The record of its lazily read values goes to `rec` as in scanFrame(). */
export function nextFrame(p: i32, n: i32, max: i32, scratch: i32, rec: i32): i32 {
  p = skipBetween(p, n);
  setMisc(M_POS, p);
  setMisc(M_ERR, 0);
  if (p + 6 < n && at(p) == LT && at4(p + 1) == W_EVEN && at(p + 5) == 0x74) {
    const d = at(p + 6);
    if (isWs(d) || d == GT || d == SLASH) {
      begin(scratch);
      const lim = n - p > max ? p + max : n;
      const e = scanBytes(p, lim, true);
      // the reason tells the framer whether the bytes merely ran out (unclosed, unterminated tag
      // or value: everything before the end was well-formed) and the frame may complete later
      if (e < 0) { setMisc(M_ERR, errReason); return 0; }
      setMisc(M_END, e);
      internAll();
      record(rec, p, e);
      return 1;
    }
  }
  return 0;
}

/** White space and complete <?…?> between events, from p. */
function skipBetween(p: i32, n: i32): i32 {
  while (p < n) {
    const c = at(p);
    if (isWs(c)) { p++; continue; }
    if (c != LT || p + 1 >= n || at(p + 1) != QM) return p;
    let q = find(p + 2, n, QM);
    while (q + 1 < n && at(q + 1) != GT) q = find(q + 1, n, QM);
    if (q + 1 >= n) return p; // not complete in this chunk
    p = q + 2;
  }
  return p;
}
