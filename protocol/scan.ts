// Hot-path header scan of one XML CoT frame: one pass over the bytes, no DOM, no regex, no
// per-byte allocation. The pass itself — the well-formedness check an ATAK parser would make and
// the byte ranges of the few values the router needs — runs in the WebAssembly core
// (protocol/wasm/scan.ts via core.ts); this module copies the bytes in, maps the result back to
// the frame Buffer, and makes strings and numbers from those ranges only once the frame has passed
// (protocol/README.md has the rules and the deliberate differences from fast-xml-parser).
import { decodeAttr, latin1, utf8 } from './chars.ts';
import { numberOf, parseDecimal } from './values.ts';
import {
  core, FE, FF, FS, M_DESTS, M_END, M_ERR, M_ERROFF, M_LINK, M_MEND, M_MORE, M_MSTART, M_NDESTS, M_NMORE, M_POS,
  mem32, memF64, place, refresh, release, scratchAt, STALE_MS, top,
} from './core.ts';

export interface CotDest { callsign?: string; uid?: string }
export interface CotPoint { lat: number; lon: number; hae: number; ce: number; le: number }
export interface CotHeader {
  ok: true;
  uid: string; type: string;
  how?: string; time?: string; start?: string; stale?: string; version?: string;
  /** stale parsed to epoch ms; NaN when absent or unparseable */
  staleMs: number;
  /** the first event/point; a missing or unparseable coordinate is NaN */
  point?: CotPoint;
  /** detail/contact (the first one) */
  callsign?: string; endpoint?: string;
  /** detail/__group (the first one) */
  groupName?: string; groupRole?: string;
  /** detail/marti/dest entries of every marti, in document order, [] when none */
  dests: CotDest[];
  /** byte range [martiStart, martiEnd) of the first whole <marti>…</marti> or <marti/> element
   *  in the frame; -1 when absent */
  martiStart: number; martiEnd: number;
  /** further detail/<marti> elements after the first, as flat [start, end, start, end, …] byte
   *  ranges (undefined in the usual case of at most one) — recipients must see none of them */
  martiMore?: number[];
  /** detail/link uid of the first <link>, if any */
  linkUid?: string;
  /** there is at least one detail/link element (with or without uid) */
  hasLink: boolean;
  /** type is a TAK control type: t-x-c-* (ping t-x-c-t, pong t-x-c-t-r, …) or t-x-takp-* */
  control: boolean;
}
export interface ScanError { ok: false; reason: string; offset: number }

/** Every reason the scan rejects a frame, in one place (logs and tests share them). */
export const ScanReason = {
  empty: 'no <event> element',
  textOutside: 'text outside the <event> element',
  notEvent: 'root element is not <event>',
  trailing: 'content after </event>',
  tagName: 'invalid tag name',
  attrName: 'invalid attribute name',
  attrSpace: 'missing white space before attribute',
  attrEq: "expected '=' after attribute name",
  attrQuote: 'attribute value not quoted',
  attrLt: "'<' in attribute value",
  attrUnterminated: 'unterminated attribute value',
  attrDuplicate: 'duplicate attribute',
  tagUnterminated: 'unterminated tag',
  badSlash: "expected '>' after '/'",
  endTag: 'mismatched end tag',
  unclosed: 'unclosed element',
  reference: 'invalid entity or character reference',
  utf8: 'invalid UTF-8',
  char: 'character not allowed in XML',
  cdataEnd: "']]>' in character data",
  comment: 'malformed comment',
  cdata: 'malformed CDATA section',
  pi: 'malformed processing instruction',
  xmlDecl: 'XML declaration not at the start',
  doctype: 'DOCTYPE / ENTITY declarations are not allowed',
  noUid: 'event has no uid',
  noType: 'event has no type',
  nestedEvent: 'nested <event> element',
} as const;

/** reason codes of the core (protocol/wasm/scan.ts R_*), in order */
const REASONS: string[] = [
  '', ScanReason.empty, ScanReason.textOutside, ScanReason.notEvent, ScanReason.trailing, ScanReason.tagName,
  ScanReason.attrName, ScanReason.attrSpace, ScanReason.attrEq, ScanReason.attrQuote, ScanReason.attrLt,
  ScanReason.attrUnterminated, ScanReason.attrDuplicate, ScanReason.tagUnterminated, ScanReason.badSlash,
  ScanReason.endTag, ScanReason.unclosed, ScanReason.reference, ScanReason.utf8, ScanReason.char, ScanReason.cdataEnd,
  ScanReason.comment, ScanReason.cdata, ScanReason.pi, ScanReason.xmlDecl, ScanReason.doctype, ScanReason.noUid,
  ScanReason.noType, ScanReason.nestedEvent,
];

// Fields recorded as byte ranges by the core (FS/FE/FF slots).
const F_UID = 0, F_TYPE = 1, F_HOW = 2, F_TIME = 3, F_START = 4, F_STALE = 5, F_VERSION = 6,
  F_LAT = 7, F_LON = 8, F_HAE = 9, F_CE = 10, F_LE = 11, F_CALLSIGN = 12, F_ENDPOINT = 13,
  F_GNAME = 14, F_GROLE = 15, F_LINK = 16;
// Value flags: plain ASCII, contains UTF-8, needs decoding (references or literal tab/LF/CR).
const V_UTF8 = 1;

/** wasm address of b[0] for the frame being built: a core range [s, e) is b[s - off, e - off) */
let off = 0;

// A frame the framer has just scanned itself: scan() of that same Buffer returns the result
// without a second pass (the framer sets it for the duration of its sink.frame() call only).
let primedFrame: Buffer | undefined;
let primedResult: CotHeader | ScanError | undefined;
/** @internal used by the framer */
export function primeScan(frame: Buffer | undefined, result: CotHeader | ScanError | undefined): void {
  primedFrame = frame;
  primedResult = result;
}

/** Reads the CoT header of one frame and checks it is well-formed. */
export function scan(frame: Buffer): CotHeader | ScanError {
  if (frame === primedFrame && primedResult !== undefined) return primedResult;
  return scanFrame(frame);
}

/** @internal the scan proper, without the framer's memo */
export function scanFrame(b: Buffer): CotHeader | ScanError {
  const saved = top;
  try {
    const at = place(b, 0, b.length);
    const end = core.scanFrame(at, at + b.length, scratchAt());
    if (mem32.length === 0) refresh();
    if (end < 0) return { ok: false, reason: REASONS[mem32[M_ERR]], offset: mem32[M_ERROFF] - at };
    off = at;
    return build(b, 0, end - at);
  } finally {
    release(saved);
  }
}

/** @internal Where the last nextFrameAt() stopped: the frame start, or where the lexer resumes. */
export let nextPos = 0;
/** @internal End (exclusive) of the frame found by the last successful nextFrameAt(). */
export let nextEnd = 0;

/** @internal For the framer, between frames at b[p] with b[p, n) already in the core at address
 *  `base` + index: skips white space and complete <?…?> (nextPos tells how far) and reads the
 *  <event> element that starts there within `max` bytes. undefined when there is no complete
 *  well-formed event there (the framer then lexes exactly from nextPos). */
export function nextFrameAt(b: Buffer, base: number, p: number, n: number, max: number): CotHeader | undefined {
  const r = core.nextFrame(base + p, base + n, max, scratchAt());
  if (mem32.length === 0) refresh();
  const s = mem32[M_POS] - base;
  nextPos = s;
  if (r === 0) return undefined;
  const e = mem32[M_END] - base;
  nextEnd = e;
  off = base;
  return build(b, s, e);
}

/** t-x-c-* (ping t-x-c-t, pong t-x-c-t-r) and t-x-takp-* (protocol negotiation). */
export function isControlType(type: string): boolean {
  return type.startsWith('t-x-c-') || type.startsWith('t-x-takp-');
}

// ---- values, made once the frame has passed ----------------------------------------------------

/** Small frames are decoded to one latin1 string and fields are substrings of it (one native call
 *  instead of one per field); bigger frames decode field by field so a kept uid never pins a
 *  large string. */
const WHOLE_FRAME_MAX = 4096;
let frameStr: string | undefined;
let frameBase = 0;
let frameEnd = 0;

function text(b: Buffer, s: number, e: number, flags: number): string {
  if (flags === 0) {
    if (frameEnd - frameBase <= WHOLE_FRAME_MAX) {
      if (frameStr === undefined) frameStr = latin1(b, frameBase, frameEnd);
      return frameStr.substring(s - frameBase, e - frameBase);
    }
    return latin1(b, s, e);
  }
  if (flags === V_UTF8) return utf8(b, s, e);
  return decodeAttr(b, s, e);
}

function field(b: Buffer, f: number): string | undefined {
  const s = mem32[FS + f];
  return s < 0 ? undefined : text(b, s - off, mem32[FE + f] - off, mem32[FF + f]);
}

function coord(b: Buffer, f: number): number {
  const s = mem32[FS + f];
  if (s < 0) return NaN;
  if (mem32[FF + f] === 0) return parseDecimal(b, s - off, mem32[FE + f] - off);
  return numberOf(text(b, s - off, mem32[FE + f] - off, mem32[FF + f]));
}

// The header: what the router reads (uid, type, staleMs, contact, dests, marti ranges, link,
// control) is made eagerly; the rest (how time start stale version __group point), which nothing
// on the hot path reads, is kept as ranges of the frame's latin1 string and made on first access.
// Strings are immutable, so a lazy field stays correct after the frame Buffer is reused. Fields
// that need decoding (UTF-8, references) and every field of a large frame are made eagerly.
// Few own properties: one array of packed ranges and one of made values, so a header is cheap
// to build (it is made for every frame).
const NONE = -1; // packed range: absent, or made (the value is in the values array)
const RANGE_BITS = 8192; // WHOLE_FRAME_MAX < RANGE_BITS: start * RANGE_BITS + end fits a small int
/** the lazy fields, in the order of the ranges array; L_POINT..L_POINT+4 are lat lon hae ce le */
const LAZY = [F_HOW, F_TIME, F_START, F_STALE, F_VERSION, F_GNAME, F_GROLE];
const L_POINT = 7;

class Header implements CotHeader {
  declare readonly ok: true;
  uid: string;
  type: string;
  staleMs: number;
  callsign: string | undefined;
  endpoint: string | undefined;
  dests: CotDest[];
  martiStart: number;
  martiEnd: number;
  martiMore: number[] | undefined;
  linkUid: string | undefined;
  hasLink: boolean;
  control: boolean;
  /** latin1 string of the frame (lazy ranges index it), '' when all is eager */
  private readonly s_: string;
  /** packed ranges of the lazy fields (LAZY order, then the point's five coordinates) */
  private readonly r_: number[];
  /** made values of the lazy fields (LAZY order, then the point), undefined until one is made */
  private v_: (string | CotPoint | undefined)[] | undefined;

  constructor(b: Buffer, base: number, str: string) {
    this.s_ = str;
    this.uid = field(b, F_UID)!;
    const type = field(b, F_TYPE)!;
    this.type = type;
    const staleMs = memF64[STALE_MS]; // made by the core for the plain CoT form
    this.staleMs = staleMs === staleMs || mem32[FS + F_STALE] < 0 ? staleMs : Date.parse(field(b, F_STALE)!);
    this.callsign = field(b, F_CALLSIGN);
    this.endpoint = field(b, F_ENDPOINT);
    const list: CotDest[] = [];
    const ndests = mem32[M_NDESTS];
    for (let i = 0, o = mem32[M_DESTS] >> 2; i < ndests; i++, o += 6) {
      const d: CotDest = {};
      const m = mem32;
      if (m[o] >= 0) d.callsign = text(b, m[o] - off, m[o + 1] - off, m[o + 2]);
      if (m[o + 3] >= 0) d.uid = text(b, m[o + 3] - off, m[o + 4] - off, m[o + 5]);
      list.push(d);
    }
    this.dests = list;
    const ms = mem32[M_MSTART], me = mem32[M_MEND], nmore = mem32[M_NMORE];
    const at = off + base; // core address of the frame start
    this.martiStart = ms < 0 ? -1 : ms - at;
    this.martiEnd = me < 0 ? -1 : me - at;
    if (nmore === 0) {
      this.martiMore = undefined;
    } else {
      const more: number[] = [];
      for (let i = 0, o = mem32[M_MORE] >> 2; i < nmore; i++) more.push(mem32[o + i] - at);
      this.martiMore = more;
    }
    this.linkUid = field(b, F_LINK);
    this.hasLink = mem32[M_LINK] !== 0;
    this.control = type.charCodeAt(0) === 0x74 && isControlType(type);
    const lazy = str.length !== 0;
    const r = [
      lazyRange(F_HOW, at, lazy), lazyRange(F_TIME, at, lazy), lazyRange(F_START, at, lazy), lazyRange(F_STALE, at, lazy),
      lazyRange(F_VERSION, at, lazy), lazyRange(F_GNAME, at, lazy), lazyRange(F_GROLE, at, lazy),
      NONE, NONE, NONE, NONE, NONE,
    ];
    this.r_ = r;
    this.v_ = undefined;
    let v: (string | CotPoint | undefined)[] | undefined;
    for (let i = 0; i < L_POINT; i++) {
      if (r[i] === NONE && mem32[FS + LAZY[i]] >= 0) (v ??= new Array(L_POINT + 1))[i] = field(b, LAZY[i]);
    }
    if (mem32[FS + F_LAT] !== -2) {
      if (lazy && (mem32[FF + F_LAT] | mem32[FF + F_LON] | mem32[FF + F_HAE] | mem32[FF + F_CE] | mem32[FF + F_LE]) === 0) {
        r[L_POINT] = packed(F_LAT, at); r[L_POINT + 1] = packed(F_LON, at); r[L_POINT + 2] = packed(F_HAE, at);
        r[L_POINT + 3] = packed(F_CE, at); r[L_POINT + 4] = packed(F_LE, at);
        (v ??= new Array(L_POINT + 1))[L_POINT] = POINT_PENDING;
      } else {
        (v ??= new Array(L_POINT + 1))[L_POINT] = { lat: coord(b, F_LAT), lon: coord(b, F_LON), hae: coord(b, F_HAE), ce: coord(b, F_CE), le: coord(b, F_LE) };
      }
    }
    if (v !== undefined) this.v_ = v;
  }

  /** lazy field i (LAZY order) */
  private lazy(i: number): string | undefined {
    const r = this.r_[i];
    if (r !== NONE) {
      const v = (this.v_ ??= new Array(L_POINT + 1));
      const s = Math.floor(r / RANGE_BITS);
      v[i] = this.s_.substring(s, r - s * RANGE_BITS);
      this.r_[i] = NONE;
    }
    return this.v_?.[i] as string | undefined;
  }

  get how(): string | undefined { return this.lazy(0); }
  get time(): string | undefined { return this.lazy(1); }
  get start(): string | undefined { return this.lazy(2); }
  get stale(): string | undefined { return this.lazy(3); }
  get version(): string | undefined { return this.lazy(4); }
  get groupName(): string | undefined { return this.lazy(5); }
  get groupRole(): string | undefined { return this.lazy(6); }
  get point(): CotPoint | undefined {
    const v = this.v_;
    if (v === undefined) return undefined;
    let p = v[L_POINT];
    if (p === POINT_PENDING) {
      // numberOf(text) is what parseDecimal() computes from the same plain ASCII bytes
      const r = this.r_;
      const c = (i: number): number => {
        const x = r[L_POINT + i];
        if (x === NONE) return NaN;
        const s = Math.floor(x / RANGE_BITS);
        return numberOf(this.s_.substring(s, x - s * RANGE_BITS));
      };
      p = { lat: c(0), lon: c(1), hae: c(2), ce: c(3), le: c(4) };
      v[L_POINT] = p;
    }
    return p as CotPoint | undefined;
  }

  /** plain data, so a header logs and compares like the object it describes */
  toJSON(): CotHeader {
    return {
      ok: true, uid: this.uid, type: this.type, how: this.how, time: this.time, start: this.start, stale: this.stale,
      version: this.version, staleMs: this.staleMs, point: this.point, callsign: this.callsign, endpoint: this.endpoint,
      groupName: this.groupName, groupRole: this.groupRole, dests: this.dests, martiStart: this.martiStart,
      martiEnd: this.martiEnd, martiMore: this.martiMore, linkUid: this.linkUid, hasLink: this.hasLink, control: this.control,
    };
  }
}
Object.defineProperty(Header.prototype, 'ok', { value: true, enumerable: true });
/** marks a point whose coordinates are still ranges */
const POINT_PENDING: CotPoint = Object.freeze({ lat: NaN, lon: NaN, hae: NaN, ce: NaN, le: NaN });

/** packed range of field f relative to the frame start `at` (core address), NONE when absent */
function packed(f: number, at: number): number {
  const s = mem32[FS + f];
  return s < 0 ? NONE : (s - at) * RANGE_BITS + (mem32[FE + f] - at);
}

/** packed range of a lazily made plain field; NONE when absent, eager or not plain */
function lazyRange(f: number, at: number, lazy: boolean): number {
  return lazy && mem32[FF + f] === 0 ? packed(f, at) : NONE;
}

function build(b: Buffer, base: number, end: number): CotHeader {
  frameStr = undefined;
  frameBase = base;
  frameEnd = end;
  const small = end - base <= WHOLE_FRAME_MAX;
  if (small) frameStr = latin1(b, base, end);
  const h = new Header(b, base, small ? frameStr! : '');
  frameStr = undefined;
  return h;
}
