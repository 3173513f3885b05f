// Hot-path header scan of one XML CoT frame: one pass over the bytes, no DOM, no regex, no
// per-byte allocation. The pass itself — the well-formedness check an ATAK parser would make and
// the byte ranges of the few values the router needs — runs in the WebAssembly core
// (protocol/wasm/scan.ts via core.ts); this module copies the bytes in, maps the result back to
// the frame Buffer, and makes strings and numbers from those ranges only once the frame has passed
// (protocol/README.md has the rules and the deliberate differences from fast-xml-parser).
import { decodeAttr, latin1, utf8 } from './chars.ts';
import { numberOf, parseDecimal } from './values.ts';
import { cotTimeMs } from './time.ts';
import {
  core, FE, FF, FS, M_DESTS, M_END, M_ERR, M_ERROFF, M_LINK, M_MEND, M_MORE, M_MSTART,
  M_NDESTS, M_NMORE, M_POS, M_RECLEN, memBuf, STAGE, STAGE_CAP,
  ISLOT_LEN, ISLOT_WORDS, ISLOTS, M_IDS, mem32, memF64, place, refresh, release, scratchAt, STALE_MS, TIME_MS, top,
} from './core.ts';

export interface CotDest { callsign?: string; uid?: string }
export interface CotPoint { lat: number; lon: number; hae: number; ce: number; le: number }
export interface CotHeader {
  ok: true;
  uid: string; type: string;
  how?: string; time?: string; start?: string; stale?: string; version?: string;
  /** stale parsed to epoch ms; NaN when absent or unparseable (a time without zone is UTC) */
  staleMs: number;
  /** time parsed likewise: the sender's clock when it made the event (stale - time is how long
   *  the sender means it to hold, whatever its clock says) */
  timeMs: number;
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
  endTagInMarkup: "'</event>' inside a comment, CDATA section or processing instruction",
} as const;

/** reason codes of the core (protocol/wasm/scan.ts R_*), in order */
const REASONS: string[] = [
  '', ScanReason.empty, ScanReason.textOutside, ScanReason.notEvent, ScanReason.trailing, ScanReason.tagName,
  ScanReason.attrName, ScanReason.attrSpace, ScanReason.attrEq, ScanReason.attrQuote, ScanReason.attrLt,
  ScanReason.attrUnterminated, ScanReason.attrDuplicate, ScanReason.tagUnterminated, ScanReason.badSlash,
  ScanReason.endTag, ScanReason.unclosed, ScanReason.reference, ScanReason.utf8, ScanReason.char, ScanReason.cdataEnd,
  ScanReason.comment, ScanReason.cdata, ScanReason.pi, ScanReason.xmlDecl, ScanReason.doctype, ScanReason.noUid,
  ScanReason.noType, ScanReason.nestedEvent, ScanReason.endTagInMarkup,
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

/**
 * The `time` of an event as epoch ms (NaN: none, not a time, or not a CoT event). For the rare
 * paths that compare two SAs of one device by its own clock (sync answers), not for the hot path.
 */
export function eventTimeMs(frame: Buffer): number {
  const h = scan(frame);
  return h.ok ? h.timeMs : NaN;
}

/** @internal the scan proper, without the framer's memo */
export function scanFrame(b: Buffer): CotHeader | ScanError {
  const saved = top;
  try {
    const at = place(b, 0, b.length);
    const end = core.scanFrame(at, at + b.length, scratchAt(), stageAt());
    if (mem32.length === 0) refresh();
    if (end < 0) return { ok: false, reason: REASONS[mem32[M_ERR]], offset: mem32[M_ERROFF] - at };
    off = at;
    return new Header(b, 0);
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
  const r = core.nextFrame(base + p, base + n, max, scratchAt(), stageAt());
  if (mem32.length === 0) refresh();
  const s = mem32[M_POS] - base;
  nextPos = s;
  if (r === 0) {
    const why = mem32[M_ERR];
    nextCut = why === R_UNCLOSED || why === R_TAG_UNTERMINATED || why === R_ATTR_UNTERMINATED;
    return undefined;
  }
  const e = mem32[M_END] - base;
  nextEnd = e;
  off = base;
  return new Header(b, s);
}

/** @internal After nextFrameAt() found no frame: an <event> element starts at nextPos and is
 *  well-formed up to the end of the bytes given, which cut it (it may complete in the next chunk). */
export let nextCut = false;
// the core's reasons that only arise when the bytes run out
const R_ATTR_UNTERMINATED = REASONS.indexOf(ScanReason.attrUnterminated),
  R_TAG_UNTERMINATED = REASONS.indexOf(ScanReason.tagUnterminated), R_UNCLOSED = REASONS.indexOf(ScanReason.unclosed);

/** @internal For the framer: a frame cut by the last chunk, its start kept and now placed in the
 *  core followed by the next chunk, from core address `at` to `end`. The length of the frame
 *  when it is complete and well-formed there (then joinedHeader() of the frame's bytes), else -1. */
export function joinedFrameAt(at: number, end: number, max: number): number {
  const r = core.nextFrame(at, end, max, scratchAt(), stageAt());
  if (mem32.length === 0) refresh();
  if (r === 0 || mem32[M_POS] !== at) return -1;
  return mem32[M_END] - at;
}

/** @internal The header of the frame joinedFrameAt() just found: `frame` holds its bytes as placed
 *  from core address `at` (no core call in between). */
export function joinedHeader(frame: Buffer, at: number): CotHeader {
  off = at;
  return new Header(frame, 0);
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

/** Eager field f (k: its index in M_IDS) that the core's table does not have (the constructor
 *  takes the interned string itself): made from the bytes, and on a miss stored in its slot,
 *  which is then validated. */
function eager(b: Buffer, f: number, k: number): string | undefined {
  const m = mem32;
  const id = m[M_IDS + k];
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

// The lazily read values (how time start stale version, __group name role, the point) of a frame
// whose values are all plain ASCII are copied by the core into a staging area in its memory, one
// small record per frame (wasm/scan.ts record()); the records of many frames become one latin1
// string at once (one native call and ~150 bytes per SA frame, instead of a call and the whole
// frame each), held by a Batch that the headers of those frames share. The batch's string is made
// when the framer's push() returns (endChunk()), when the area fills up, or when a header of the
// batch is read first, whichever comes first; the records stay in the area until then. Strings are
// immutable, so the values stay right after the frame Buffer is reused.
class Batch {
  s: string | undefined = undefined;
}
let batch = new Batch();
/** where the current batch starts and where the next record goes, in the staging area */
let batchFrom = 0;
let stageTop = 0;
/** room left for one record: a frame with records is at most 4 KiB (+ marks and SIMD slack) */
const STAGE_ROOM = 4096 + 64;

/** where the core writes the next record; seals the batch first when the area is nearly full */
function stageAt(): number {
  if (stageTop + STAGE_ROOM > STAGE_CAP) seal();
  return STAGE + stageTop;
}

/** the current batch gets its string; the next records start a new one (the area from 0 when no
 *  batch is left unsealed) */
function seal(): void {
  if (stageTop > batchFrom) {
    if (memBuf.length === 0) refresh();
    batch.s = latin1(memBuf, STAGE + batchFrom, STAGE + stageTop);
    batch = new Batch();
  }
  batchFrom = stageTop = 0;
}

/** @internal the framer's chunk is done: the lazily read values of its frames become a string */
export function endChunk(): void {
  seal();
}

// The header: what the router reads (uid, type, staleMs, contact, dests, marti ranges, link,
// control) is made at once, the strings mostly from the core's intern table; the rest, which
// nothing on the hot path reads, on first access from the frame's record in its batch (above), or
// at once when a value needs decoding or the frame is large.
const LAZY_FIELDS = [F_HOW, F_TIME, F_START, F_STALE, F_VERSION, F_GNAME, F_GROLE];
/** dests of the (usual) frame without any: one shared, frozen array */
const NO_DESTS: CotDest[] = Object.freeze([]) as unknown as CotDest[];

class Header implements CotHeader {
  declare readonly ok: true;
  uid: string;
  type: string;
  staleMs: number;
  timeMs: number;
  callsign: string | undefined;
  endpoint: string | undefined;
  dests: CotDest[];
  martiStart: number;
  martiEnd: number;
  martiMore: number[] | undefined;
  linkUid: string | undefined;
  hasLink: boolean;
  control: boolean;
  /** the batch holding this frame's record of lazily read values, and where in its string */
  private readonly b_: Batch | undefined;
  private readonly r_: number;
  /** the lazily read values (LAZY order, then the point), once made */
  private v_: (string | CotPoint | undefined)[] | undefined;

  constructor(b: Buffer, base: number) {
    const m = mem32;
    const at = off + base; // core address of the frame start
    // the interned fields first: a missed slot is validated once its string is stored
    const is = interned;
    let id = m[M_IDS];
    this.uid = id >= 0 && id < ISLOTS ? is[id] : eager(b, F_UID, 0)!;
    id = m[M_IDS + 1];
    const type = id >= 0 && id < ISLOTS ? is[id] : eager(b, F_TYPE, 1)!;
    this.type = type;
    id = m[M_IDS + 2];
    this.callsign = id >= 0 && id < ISLOTS ? is[id] : eager(b, F_CALLSIGN, 2);
    id = m[M_IDS + 3];
    this.endpoint = id >= 0 && id < ISLOTS ? is[id] : eager(b, F_ENDPOINT, 3);
    id = m[M_IDS + 4];
    this.linkUid = id >= 0 && id < ISLOTS ? is[id] : eager(b, F_LINK, 4);
    const staleMs = memF64[STALE_MS]; // made by the core for the plain CoT form
    this.staleMs = staleMs === staleMs || m[FS + F_STALE] < 0 ? staleMs : cotTimeMs(field(b, F_STALE)!);
    const timeMs = memF64[TIME_MS];
    this.timeMs = timeMs === timeMs || m[FS + F_TIME] < 0 ? timeMs : cotTimeMs(field(b, F_TIME)!);
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
    const rec = m[M_RECLEN];
    if (rec >= 0) {
      this.b_ = batch;
      this.r_ = stageTop - batchFrom;
      stageTop += rec;
      this.v_ = undefined;
    } else {
      // values to decode, or a large frame: all made now, from the bytes
      this.b_ = undefined;
      this.r_ = 0;
      const v: (string | CotPoint | undefined)[] = LAZY_FIELDS.map((f) => field(b, f));
      v.push(m[FS + F_LAT] === -2 ? undefined
        : { lat: coord(b, F_LAT), lon: coord(b, F_LON), hae: coord(b, F_HAE), ce: coord(b, F_CE), le: coord(b, F_LE) });
      this.v_ = v;
    }
  }

  /** the lazily read values, made from the record on first access */
  private lazy(): (string | CotPoint | undefined)[] {
    if (this.v_ !== undefined) return this.v_;
    const bt = this.b_!;
    if (bt.s === undefined) seal();
    const s = bt.s!;
    const v: (string | CotPoint | undefined)[] = [];
    const num: number[] = [];
    let p = this.r_;
    for (let i = 0; i < LAZY_FIELDS.length + 5; i++) {
      let x: string | undefined;
      if (s.charCodeAt(p) === 2) {
        p++;
      } else {
        const q = s.indexOf('\x01', p);
        x = s.substring(p, q);
        p = q + 1;
      }
      // numberOf(text) is what parseDecimal() computes from the same plain ASCII bytes
      if (i < LAZY_FIELDS.length) v.push(x);
      else num.push(x === undefined ? NaN : numberOf(x));
    }
    v.push(s.charCodeAt(p) === 2 ? undefined : { lat: num[0], lon: num[1], hae: num[2], ce: num[3], le: num[4] });
    this.v_ = v;
    return v;
  }

  get how(): string | undefined { return this.lazy()[0] as string | undefined; }
  get time(): string | undefined { return this.lazy()[1] as string | undefined; }
  get start(): string | undefined { return this.lazy()[2] as string | undefined; }
  get stale(): string | undefined { return this.lazy()[3] as string | undefined; }
  get version(): string | undefined { return this.lazy()[4] as string | undefined; }
  get groupName(): string | undefined { return this.lazy()[5] as string | undefined; }
  get groupRole(): string | undefined { return this.lazy()[6] as string | undefined; }
  get point(): CotPoint | undefined { return this.lazy()[7] as CotPoint | undefined; }

  /** plain data, so a header logs and compares like the object it describes */
  toJSON(): CotHeader {
    return {
      ok: true, uid: this.uid, type: this.type, how: this.how, time: this.time, start: this.start, stale: this.stale,
      version: this.version, staleMs: this.staleMs, timeMs: this.timeMs, point: this.point, callsign: this.callsign, endpoint: this.endpoint,
      groupName: this.groupName, groupRole: this.groupRole, dests: this.dests, martiStart: this.martiStart,
      martiEnd: this.martiEnd, martiMore: this.martiMore, linkUid: this.linkUid, hasLink: this.hasLink, control: this.control,
    };
  }
}
Object.defineProperty(Header.prototype, 'ok', { value: true, enumerable: true });
