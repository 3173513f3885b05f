// Byte classes and UTF-8 / character-reference checks shared by the framer and the scan.
// Everything works on bytes (Uint8Array indexes); nothing here allocates per byte.

export const TAB = 0x09;
export const LF = 0x0a;
export const CR = 0x0d;
export const SP = 0x20;
export const BANG = 0x21; // !
export const DQ = 0x22; // "
export const HASH = 0x23; // #
export const AMP = 0x26; // &
export const SQ = 0x27; // '
export const DASH = 0x2d; // -
export const SLASH = 0x2f; // /
export const SEMI = 0x3b; // ;
export const LT = 0x3c; // <
export const EQ = 0x3d; // =
export const GT = 0x3e; // >
export const QM = 0x3f; // ?
export const LSQB = 0x5b; // [
export const RSQB = 0x5d; // ]

/** XML white space: space, tab, LF, CR. */
export function isWs(c: number): boolean {
  return c === SP || c === LF || c === TAB || c === CR;
}

/** NAME_START | NAME bits per byte. Bytes >= 0x80 are accepted as name characters here and
 *  validated as UTF-8 by the caller; the exact Unicode NameChar ranges are not checked (documented
 *  in protocol/README.md). */
export const NAME_START = 1;
export const NAME_CHAR = 2;
export const nameTab = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x3a || c >= 0x80) {
    nameTab[c] = NAME_START | NAME_CHAR;
  } else if ((c >= 0x30 && c <= 0x39) || c === DASH || c === 0x2e) {
    nameTab[c] = NAME_CHAR;
  }
}

/** Byte tables: 0 = an ordinary byte needing no attention in that context, 1 = look closer.
 *  Control bytes (< 0x20) are "look closer" everywhere; tab/LF/CR are then accepted by the caller. */
function table(special: number[], wsPlain: boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 0x20; c++) t[c] = 1;
  if (wsPlain) t[TAB] = t[LF] = t[CR] = 0;
  for (let c = 0x80; c < 256; c++) t[c] = 1;
  for (const c of special) t[c] = 1;
  return t;
}
/** attribute value in double quotes: tab/LF/CR are special because they are normalised to spaces */
export const attrDqTab = table([DQ, LT, AMP], false);
export const attrSqTab = table([SQ, LT, AMP], false);
/** character data between tags ('>' is special only to catch "]]>") */
export const textTab = table([LT, AMP, GT], true);
export const commentTab = table([DASH], true);
export const cdataTab = table([RSQB], true);
export const piTab = table([QM], true);

/** Validates one UTF-8 encoded XML Char whose lead byte b[p] is >= 0x80. Returns the index after it,
 *  or -1 for an invalid sequence (bad lead or continuation byte, overlong form, surrogate, beyond
 *  U+10FFFF, truncated) or for U+FFFE / U+FFFF, which XML 1.0 excludes. */
export function utf8Next(b: Uint8Array, p: number, n: number): number {
  const c = b[p];
  if (c < 0xc2) return -1;
  if (c < 0xe0) {
    if (p + 1 >= n || (b[p + 1] & 0xc0) !== 0x80) return -1;
    return p + 2;
  }
  if (c < 0xf0) {
    if (p + 2 >= n) return -1;
    const c1 = b[p + 1];
    const c2 = b[p + 2];
    if ((c1 & 0xc0) !== 0x80 || (c2 & 0xc0) !== 0x80) return -1;
    if (c === 0xe0 && c1 < 0xa0) return -1; // overlong
    if (c === 0xed && c1 >= 0xa0) return -1; // UTF-16 surrogate
    if (c === 0xef && c1 === 0xbf && c2 >= 0xbe) return -1; // U+FFFE, U+FFFF
    return p + 3;
  }
  if (c < 0xf5) {
    if (p + 3 >= n) return -1;
    const c1 = b[p + 1];
    if ((c1 & 0xc0) !== 0x80 || (b[p + 2] & 0xc0) !== 0x80 || (b[p + 3] & 0xc0) !== 0x80) return -1;
    if (c === 0xf0 && c1 < 0x90) return -1; // overlong
    if (c === 0xf4 && c1 >= 0x90) return -1; // > U+10FFFF
    return p + 4;
  }
  return -1;
}

/** Is the code point an XML 1.0 Char? */
export function isXmlChar(cp: number): boolean {
  if (cp < 0x20) return cp === TAB || cp === LF || cp === CR;
  if (cp <= 0xd7ff) return true;
  if (cp < 0xe000) return false;
  if (cp <= 0xfffd) return true;
  return cp >= 0x10000 && cp <= 0x10ffff;
}

/** Code point of the last reference parsed by parseRef. */
export let refCodePoint = 0;

/** Parses a reference starting at b[p] === '&': one of the five predefined entities or a decimal /
 *  hexadecimal character reference of an XML Char. There is no DTD, so any other name is an error:
 *  nothing is ever expanded. Returns the index after ';', or -1. */
export function parseRef(b: Uint8Array, p: number, n: number): number {
  let q = p + 1;
  if (q >= n) return -1;
  let c = b[q];
  if (c === HASH) {
    q++;
    let cp = 0;
    let digits = 0;
    if (q < n && b[q] === 0x78 /* x */) {
      q++;
      for (; q < n; q++) {
        c = b[q];
        let v: number;
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
        c = b[q];
        if (c < 0x30 || c > 0x39) break;
        cp = cp * 10 + (c - 0x30);
        if (cp > 0x10ffff) return -1;
        digits++;
      }
    }
    if (digits === 0 || q >= n || b[q] !== SEMI || !isXmlChar(cp)) return -1;
    refCodePoint = cp;
    return q + 1;
  }
  // predefined entities: lt gt amp quot apos
  const rest = n - q;
  if (c === 0x6c /* l */ || c === 0x67 /* g */) {
    if (rest < 3 || b[q + 1] !== 0x74 /* t */ || b[q + 2] !== SEMI) return -1;
    refCodePoint = c === 0x6c ? LT : GT;
    return q + 3;
  }
  if (c === 0x61 /* a */) {
    if (rest >= 4 && b[q + 1] === 0x6d && b[q + 2] === 0x70 && b[q + 3] === SEMI) {
      refCodePoint = AMP;
      return q + 4;
    }
    if (rest >= 5 && b[q + 1] === 0x70 && b[q + 2] === 0x6f && b[q + 3] === 0x73 && b[q + 4] === SEMI) {
      refCodePoint = SQ;
      return q + 5;
    }
    return -1;
  }
  if (c === 0x71 /* q */) {
    if (rest >= 5 && b[q + 1] === 0x75 && b[q + 2] === 0x6f && b[q + 3] === 0x74 && b[q + 4] === SEMI) {
      refCodePoint = DQ;
      return q + 5;
    }
  }
  return -1;
}

/** Decodes an attribute value already validated by the scan: references replaced, literal
 *  tab/LF/CR normalised to a space (CR LF counts once), as XML 1.0 §3.3.3 requires of a parser. */
export function decodeAttr(b: Buffer, s: number, e: number): string {
  let out = '';
  let run = s;
  let p = s;
  while (p < e) {
    const c = b[p];
    if (c === AMP) {
      if (run < p) out += b.toString('utf8', run, p);
      p = parseRef(b, p, e);
      out += String.fromCodePoint(refCodePoint);
      run = p;
    } else if (c === TAB || c === LF || c === CR) {
      if (run < p) out += b.toString('utf8', run, p);
      out += ' ';
      p += c === CR && p + 1 < e && b[p + 1] === LF ? 2 : 1;
      run = p;
    } else {
      p++;
    }
  }
  if (run < e) out += b.toString('utf8', run, e);
  return out;
}

/** 1 for ASCII name characters (the tight loop); bytes >= 0x80 are handled apart as UTF-8. */
export const nameAsciiTab = new Uint8Array(256);
for (let c = 0; c < 0x80; c++) nameAsciiTab[c] = nameTab[c] & NAME_CHAR ? 1 : 0;

/** Buffer's own slice functions: Buffer#toString(enc, s, e) without its argument handling. */
interface Slices { latin1Slice(s: number, e: number): string; utf8Slice(s: number, e: number): string }
export function latin1(b: Buffer, s: number, e: number): string {
  return (b as unknown as Slices).latin1Slice(s, e);
}
export function utf8(b: Buffer, s: number, e: number): string {
  return (b as unknown as Slices).utf8Slice(s, e);
}
