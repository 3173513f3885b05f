// Hot-path header scan of one XML CoT frame: one pass over the bytes, no DOM, no regex, no
// per-byte allocation. The pass itself — the well-formedness check an ATAK parser would make and
// the byte ranges of the few values the router needs — runs in the WebAssembly core
// (protocol/wasm/scan.ts via core.ts); this module copies the bytes in, maps the result back to
// the frame Buffer, and makes strings and numbers from those ranges only once the frame has passed
// (protocol/README.md has the rules and the deliberate differences from fast-xml-parser).
import { decodeAttr, latin1, utf8 } from './chars.ts';
import { numberOf, parseDecimal } from './values.ts';
import {
  core, FE, FF, FS, M_DESTS, M_END, M_ERR, M_ERROFF, M_EVENT, M_GROUP, M_LAZYF, M_LINK, M_MEND, M_MORE, M_MSTART,
  M_NDESTS, M_NMORE, M_POINT, M_POS,
  ISLOT_LEN, ISLOT_WORDS, ISLOTS, M_IDS, mem32, memF64, place, refresh, release, scratchAt, STALE_MS, top,
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
    return build(b, 0, end - at, b.length, false);
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
  return build(b, s, e, n, true);
}

/** t-x-c-* (ping t-x-c-t, pong t-x-c-t-r) and t-x-takp-* (protocol negotiation). */
export function isControlType(type: string): boolean {
  return type.startsWith('t-x-c-') || type.startsWith('t-x-takp-');
}

// ---- values, made once the frame has passed ----------------------------------------------------

/** A string of its own (never a slice of a longer one, so keeping it pins nothing) from b[s, e). */
function own(b: Buffer, s: number, e: number, flags: number): string {
  if (flags === 0) return latin1(b, s, e);
  if (flags === V_UTF8) return utf8(b, s, e);
  return decodeAttr(b, s, e);
}

function field(b: Buffer, f: number): string | undefined {
  const s = mem32[FS + f];
  return s < 0 ? undefined : own(b, s - off, mem32[FE + f] - off, mem32[FF + f]);
}

/** One JS string per slot of the core's intern table (wasm/scan.ts intern()). */
const interned: string[] = new Array<string>(ISLOTS).fill('');

/** Eager field f (k: its index in M_IDS): the interned string when the core's table has its bytes;
 *  else made from the bytes, and on a miss stored in its slot, which is then validated. */
function eager(b: Buffer, f: number, k: number): string | undefined {
  const m = mem32;
  const id = m[M_IDS + k];
  if (id >= 0 && id < ISLOTS) return interned[id];
  const s = m[FS + f];
  if (s < 0) return undefined;
  const e = m[FE + f];
  const str = own(b, s - off, e - off, m[FF + f]);
  if (id < 0) {
    interned[~id] = str;
    m[ISLOT_LEN + ~id * ISLOT_WORDS] = e - s + 1;
  }
  return str;
}

function coord(b: Buffer, f: number): number {
  const s = mem32[FS + f];
  if (s < 0) return NaN;
  if (mem32[FF + f] === 0) return parseDecimal(b, s - off, mem32[FE + f] - off);
  return numberOf(own(b, s - off, mem32[FE + f] - off, mem32[FF + f]));
}

/** Lazy fields of frames up to this size are read later from a latin1 string holding the frame;
 *  bigger frames make them at once, so a kept header never pins a large string. */
const WHOLE_FRAME_MAX = 4096;
/** The framer's frames share one latin1 string per stretch of the chunk (one native call per
 *  LAZY_SPAN bytes instead of one per frame): the lazy fields' text, kept by the headers. Valid
 *  for the chunk being pushed only: the framer calls endChunk() when push() returns, since the
 *  same Buffer may then be refilled. */
const LAZY_SPAN = 16384;
let spanBuf: Buffer | undefined;
let spanStr = '';
let spanFrom = 0;
let spanTo = 0;

/** @internal the framer's chunk is done: its Buffer may be reused */
export function endChunk(): void {
  spanBuf = undefined;
  spanStr = '';
}

// The header: what the router reads (uid, type, staleMs, contact, dests, marti ranges, link,
// control) is made eagerly; the rest (how time start stale version __group point), which nothing
// on the hot path reads, is found again on first access in the frame's latin1 string, from where
// the core says its element starts (<event>, the first <point>, the first <__group>): a header
// keeps three offsets, not a dozen ranges (copying those out of the core cost ~10% of a frame).
// Strings are immutable, so a lazy field stays correct after the frame Buffer is reused. When a
// lazy field needs decoding (UTF-8, references) or the frame is large, they are all made at once.
const LAZY_NAMES = ['how', 'time', 'start', 'stale', 'version', 'name', 'role'];
const LAZY_FIELDS = [F_HOW, F_TIME, F_START, F_STALE, F_VERSION, F_GNAME, F_GROLE];
const L_GROUP = 5; // LAZY_NAMES[5, 7) are __group's
const L_POINT = 7;
const ALL_MADE = 0xff;
/** dests of the (usual) frame without any: one shared, frozen array */
const NO_DESTS: CotDest[] = Object.freeze([]) as unknown as CotDest[];

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
  /** latin1 string of the frame (the lazy fields are read from it), '' when all are made */
  private readonly s_: string;
  /** offsets in s_ of the <event>, first <point> and first <__group> start tags (-1: none) */
  private readonly ev_: number;
  private readonly pt_: number;
  private readonly gr_: number;
  /** bit i: the lazy field i (LAZY_NAMES order, then the point) is made, in v_[i] */
  private made_: number;
  private v_: (string | CotPoint | undefined)[] | undefined;

  /** str: latin1 text holding the frame b[base, …) from str[strAt] ('' to make all fields now) */
  constructor(b: Buffer, base: number, str: string, strAt: number) {
    const m = mem32;
    const at = off + base; // core address of the frame start
    // the interned fields first: a missed slot is validated once its string is stored
    this.uid = eager(b, F_UID, 0)!;
    const type = eager(b, F_TYPE, 1)!;
    this.type = type;
    this.callsign = eager(b, F_CALLSIGN, 2);
    this.endpoint = eager(b, F_ENDPOINT, 3);
    this.linkUid = eager(b, F_LINK, 4);
    const staleMs = memF64[STALE_MS]; // made by the core for the plain CoT form
    this.staleMs = staleMs === staleMs || m[FS + F_STALE] < 0 ? staleMs : Date.parse(field(b, F_STALE)!);
    const ndests = m[M_NDESTS];
    const list: CotDest[] = ndests === 0 ? NO_DESTS : [];
    for (let i = 0, o = m[M_DESTS] >> 2; i < ndests; i++, o += 6) {
      const d: CotDest = {};
      if (m[o] >= 0) d.callsign = own(b, m[o] - off, m[o + 1] - off, m[o + 2]);
      if (m[o + 3] >= 0) d.uid = own(b, m[o + 3] - off, m[o + 4] - off, m[o + 5]);
      list.push(d);
    }
    this.dests = list;
    const ms = m[M_MSTART], me = m[M_MEND], nmore = m[M_NMORE];
    this.martiStart = ms < 0 ? -1 : ms - at;
    this.martiEnd = me < 0 ? -1 : me - at;
    if (nmore === 0) {
      this.martiMore = undefined;
    } else {
      const more: number[] = [];
      for (let i = 0, o = m[M_MORE] >> 2; i < nmore; i++) more.push(m[o + i] - at);
      this.martiMore = more;
    }
    this.hasLink = m[M_LINK] !== 0;
    this.control = type.charCodeAt(0) === 0x74 && isControlType(type);
    if (str.length !== 0 && m[M_LAZYF] === 0) {
      this.s_ = str;
      const d = strAt - at; // core address + d = index in str
      this.ev_ = m[M_EVENT] + d;
      const pt = m[M_POINT], gr = m[M_GROUP];
      this.pt_ = pt < 0 ? -1 : pt + d;
      this.gr_ = gr < 0 ? -1 : gr + d;
      this.made_ = 0;
      this.v_ = undefined;
    } else {
      this.s_ = '';
      this.ev_ = this.pt_ = this.gr_ = -1;
      this.made_ = ALL_MADE;
      const v: (string | CotPoint | undefined)[] = LAZY_FIELDS.map((f) => field(b, f));
      v.push(m[FS + F_LAT] === -2 ? undefined
        : { lat: coord(b, F_LAT), lon: coord(b, F_LON), hae: coord(b, F_HAE), ce: coord(b, F_CE), le: coord(b, F_LE) });
      this.v_ = v;
    }
  }

  /** lazy field i (LAZY_NAMES order) */
  private lazy(i: number): string | undefined {
    if ((this.made_ & (1 << i)) === 0) {
      const tag = i < L_GROUP ? this.ev_ : this.gr_;
      (this.v_ ??= new Array(L_POINT + 1))[i] = tag < 0 ? undefined : attrIn(this.s_, tag, LAZY_NAMES[i]);
      this.made_ |= 1 << i;
    }
    return this.v_![i] as string | undefined;
  }

  get how(): string | undefined { return this.lazy(0); }
  get time(): string | undefined { return this.lazy(1); }
  get start(): string | undefined { return this.lazy(2); }
  get stale(): string | undefined { return this.lazy(3); }
  get version(): string | undefined { return this.lazy(4); }
  get groupName(): string | undefined { return this.lazy(5); }
  get groupRole(): string | undefined { return this.lazy(6); }
  get point(): CotPoint | undefined {
    if ((this.made_ & (1 << L_POINT)) === 0) {
      const s = this.s_, t = this.pt_;
      // numberOf(text) is what parseDecimal() computes from the same plain ASCII bytes
      const c = (name: string): number => {
        const x = attrIn(s, t, name);
        return x === undefined ? NaN : numberOf(x);
      };
      (this.v_ ??= new Array(L_POINT + 1))[L_POINT] = t < 0 ? undefined : { lat: c('lat'), lon: c('lon'), hae: c('hae'), ce: c('ce'), le: c('le') };
      this.made_ |= 1 << L_POINT;
    }
    return this.v_![L_POINT] as CotPoint | undefined;
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

/** The value of attribute `name` of the start tag at s[tag] ('<'), undefined when it has none. The
 *  frame has passed the core, so the tag is `<name (ws+ attr ws* = ws* quoted-value)* ws* /?>`
 *  and a value never holds its own quote; lazily read values are plain (no references), so the
 *  text between the quotes is the value. */
function attrIn(s: string, tag: number, name: string): string | undefined {
  let i = tag + 1;
  let c = s.charCodeAt(i);
  while (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d && c !== 0x3e && c !== 0x2f) c = s.charCodeAt(++i);
  for (;;) {
    while (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d) c = s.charCodeAt(++i);
    if (c === 0x3e || c === 0x2f) return undefined;
    const ns = i;
    while (c !== 0x3d && c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) c = s.charCodeAt(++i);
    const ne = i;
    while (c !== 0x22 && c !== 0x27) c = s.charCodeAt(++i);
    const vs = i + 1;
    const ve = s.indexOf(c === 0x22 ? '"' : "'", vs);
    if (ne - ns === name.length && s.startsWith(name, ns)) return s.substring(vs, ve);
    i = ve + 1;
    c = s.charCodeAt(i);
  }
}

/** The header of the frame b[base, end), just scanned by the core; n: end of the data in b
 *  (the framer's chunk, or the frame) and shared: whether b[base, n) is the framer's chunk, whose
 *  latin1 text the frames share until endChunk() */
function build(b: Buffer, base: number, end: number, n: number, shared: boolean): CotHeader {
  if (end - base > WHOLE_FRAME_MAX) return new Header(b, base, '', 0);
  if (!shared) return new Header(b, base, latin1(b, base, end), 0);
  if (spanBuf !== b || base < spanFrom || end > spanTo) {
    spanTo = Math.min(n, base + LAZY_SPAN);
    spanStr = latin1(b, base, spanTo);
    spanBuf = b;
    spanFrom = base;
  }
  return new Header(b, base, spanStr, base - spanFrom);
}
