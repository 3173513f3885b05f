// Hot-path header scan of one XML CoT frame: one pass over the bytes, no DOM, no regex, no
// per-byte allocation. In the same pass it checks that the frame is well-formed XML an ATAK parser
// will accept and records where the few values the router needs are; strings and numbers are
// made from those byte ranges only once the frame has passed (protocol/README.md has the rules
// and the deliberate differences from fast-xml-parser).
import {
  AMP, BANG, CR, DASH, DQ, GT, LF, LSQB, LT, QM, RSQB, SLASH, SQ, TAB, EQ,
  NAME_CHAR, NAME_START, attrDqTab, attrSqTab, cdataTab, commentTab, decodeAttr, isWs,
  latin1, nameAsciiTab, nameTab, parseRef, piTab, textTab, utf8, utf8Next,
} from './chars.ts';
import { numberOf, parseDecimal, parseIsoMs } from './values.ts';
import { attrSetAdd, attrSetReset } from './attrset.ts';

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

// Element kinds: only these are looked at; everything else is validated and skipped.
const K_OTHER = 0, K_EVENT = 1, K_POINT = 2, K_DETAIL = 3, K_CONTACT = 4, K_GROUP = 5,
  K_MARTI = 6, K_DEST = 7, K_LINK = 8;

// Fields recorded as byte ranges during the pass.
const F_UID = 0, F_TYPE = 1, F_HOW = 2, F_TIME = 3, F_START = 4, F_STALE = 5, F_VERSION = 6,
  F_LAT = 7, F_LON = 8, F_HAE = 9, F_CE = 10, F_LE = 11, F_CALLSIGN = 12, F_ENDPOINT = 13,
  F_GNAME = 14, F_GROLE = 15, F_LINK = 16, NF = 17;
// Value flags: plain ASCII, contains UTF-8, needs decoding (references or literal tab/LF/CR).
const V_UTF8 = 1, V_DECODE = 2;

const fStart = new Int32Array(NF);
const fEnd = new Int32Array(NF);
const fFlags = new Uint8Array(NF);
// dests: 6 ints each (callsign start, end, flags, uid start, end, flags); start -1 = absent
let dests = new Int32Array(60);
let ndests = 0;

// Open-element stack and the current element's attribute names, grown on demand: hostile depth
// or attribute counts cost memory linear in the frame and nothing per ordinary event. Scan is
// synchronous and never re-entered, so module-level scratch is safe.
let stackStart = new Int32Array(64);
let stackEnd = new Int32Array(64);
let stackKind = new Uint8Array(64);
const ATTR_LINEAR_MAX = 8; // beyond this many attributes, duplicate checks use protocol/attrset.ts
const attrStart = new Int32Array(ATTR_LINEAR_MAX);
const attrEnd = new Int32Array(ATTR_LINEAR_MAX);

function growStack(): void {
  const len = stackStart.length * 2;
  const s = new Int32Array(len); s.set(stackStart); stackStart = s;
  const e = new Int32Array(len); e.set(stackEnd); stackEnd = e;
  const k = new Uint8Array(len); k.set(stackKind); stackKind = k;
}

let errReason = '';
let errOffset = 0;
/** records the error; returns -1 so callers can `return fail(...)` */
function fail(reason: string, offset: number): number {
  errReason = reason;
  errOffset = offset;
  return -1;
}

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
  const end = scanBytes(b, 0, b.length, false);
  if (end < 0) return { ok: false, reason: errReason, offset: errOffset };
  return build(b, 0, end);
}

/** @internal End (exclusive) of the element read by the last successful scanAt(). */
export let scanEnd = 0;

/** @internal For the framer: reads the <event> element that starts at b[s] within b[s, limit),
 *  stopping where it closes (scanEnd). undefined when there is no complete well-formed event
 *  there, including when the limit cuts it (the framer then lexes the frame exactly). */
export function scanAt(b: Buffer, s: number, limit: number): CotHeader | undefined {
  const end = scanBytes(b, s, limit, true);
  if (end < 0) return undefined;
  scanEnd = end;
  return build(b, s, end);
}

/** t-x-c-* (ping t-x-c-t, pong t-x-c-t-r) and t-x-takp-* (protocol negotiation). */
export function isControlType(type: string): boolean {
  return type.startsWith('t-x-c-') || type.startsWith('t-x-takp-');
}

// ---- the pass ---------------------------------------------------------------------------------

/** Which field an attribute of an element of `kind` is, or -1. */
function fieldOf(kind: number, b: Buffer, s: number, len: number): number {
  const c0 = b[s];
  switch (kind) {
    case K_EVENT:
      if (len === 3) {
        if (c0 === 0x75 && b[s + 1] === 0x69 && b[s + 2] === 0x64) return F_UID; // uid
        if (c0 === 0x68 && b[s + 1] === 0x6f && b[s + 2] === 0x77) return F_HOW; // how
      } else if (len === 4) {
        if (c0 === 0x74) {
          if (b[s + 1] === 0x79 && b[s + 2] === 0x70 && b[s + 3] === 0x65) return F_TYPE; // type
          if (b[s + 1] === 0x69 && b[s + 2] === 0x6d && b[s + 3] === 0x65) return F_TIME; // time
        }
      } else if (len === 5) {
        if (c0 === 0x73 && b[s + 1] === 0x74 && b[s + 2] === 0x61) {
          if (b[s + 3] === 0x72 && b[s + 4] === 0x74) return F_START; // start
          if (b[s + 3] === 0x6c && b[s + 4] === 0x65) return F_STALE; // stale
        }
      } else if (len === 7) {
        if (c0 === 0x76 && b[s + 1] === 0x65 && b[s + 2] === 0x72 && b[s + 3] === 0x73 &&
          b[s + 4] === 0x69 && b[s + 5] === 0x6f && b[s + 6] === 0x6e) return F_VERSION; // version
      }
      return -1;
    case K_POINT:
      if (len === 3) {
        if (c0 === 0x6c) {
          if (b[s + 1] === 0x61 && b[s + 2] === 0x74) return F_LAT; // lat
          if (b[s + 1] === 0x6f && b[s + 2] === 0x6e) return F_LON; // lon
        } else if (c0 === 0x68 && b[s + 1] === 0x61 && b[s + 2] === 0x65) return F_HAE; // hae
      } else if (len === 2 && b[s + 1] === 0x65) {
        if (c0 === 0x63) return F_CE; // ce
        if (c0 === 0x6c) return F_LE; // le
      }
      return -1;
    case K_CONTACT:
      if (len === 8) {
        if (isCallsign(b, s)) return F_CALLSIGN;
        if (c0 === 0x65 && b[s + 1] === 0x6e && b[s + 2] === 0x64 && b[s + 3] === 0x70 && b[s + 4] === 0x6f &&
          b[s + 5] === 0x69 && b[s + 6] === 0x6e && b[s + 7] === 0x74) return F_ENDPOINT; // endpoint
      }
      return -1;
    case K_GROUP:
      if (len === 4) {
        if (c0 === 0x6e && b[s + 1] === 0x61 && b[s + 2] === 0x6d && b[s + 3] === 0x65) return F_GNAME; // name
        if (c0 === 0x72 && b[s + 1] === 0x6f && b[s + 2] === 0x6c && b[s + 3] === 0x65) return F_GROLE; // role
      }
      return -1;
    case K_LINK:
      if (len === 3 && c0 === 0x75 && b[s + 1] === 0x69 && b[s + 2] === 0x64) return F_LINK;
      return -1;
    case K_DEST: // 0 = callsign, 3 = uid: offsets into the dest's six ints
      if (len === 8 && isCallsign(b, s)) return 0;
      if (len === 3 && c0 === 0x75 && b[s + 1] === 0x69 && b[s + 2] === 0x64) return 3;
      return -1;
  }
  return -1;
}

function isCallsign(b: Buffer, s: number): boolean {
  return b[s] === 0x63 && b[s + 1] === 0x61 && b[s + 2] === 0x6c && b[s + 3] === 0x6c && b[s + 4] === 0x73 &&
    b[s + 5] === 0x69 && b[s + 6] === 0x67 && b[s + 7] === 0x6e;
}

/** Kind of a child element named b[s, e) of an element of kind `parent`. */
function kindOf(parent: number, b: Buffer, s: number, e: number): number {
  const len = e - s;
  const c0 = b[s];
  switch (parent) {
    case K_EVENT:
      if (len === 5 && c0 === 0x70 && b[s + 1] === 0x6f && b[s + 2] === 0x69 && b[s + 3] === 0x6e && b[s + 4] === 0x74) {
        return fStart[F_LAT] === -2 ? K_POINT : K_OTHER; // point (the first)
      }
      if (len === 6 && c0 === 0x64 && b[s + 1] === 0x65 && b[s + 2] === 0x74 && b[s + 3] === 0x61 &&
        b[s + 4] === 0x69 && b[s + 5] === 0x6c) return K_DETAIL; // detail
      return K_OTHER;
    case K_DETAIL:
      if (len === 7) {
        if (c0 === 0x63 && b[s + 1] === 0x6f && b[s + 2] === 0x6e && b[s + 3] === 0x74 && b[s + 4] === 0x61 &&
          b[s + 5] === 0x63 && b[s + 6] === 0x74) return seenContact ? K_OTHER : K_CONTACT; // contact
        if (c0 === 0x5f && b[s + 1] === 0x5f && b[s + 2] === 0x67 && b[s + 3] === 0x72 && b[s + 4] === 0x6f &&
          b[s + 5] === 0x75 && b[s + 6] === 0x70) return seenGroup ? K_OTHER : K_GROUP; // __group
      } else if (len === 5) {
        if (c0 === 0x6d && b[s + 1] === 0x61 && b[s + 2] === 0x72 && b[s + 3] === 0x74 && b[s + 4] === 0x69) return K_MARTI;
      } else if (len === 4) {
        if (c0 === 0x6c && b[s + 1] === 0x69 && b[s + 2] === 0x6e && b[s + 3] === 0x6b) return hasLink ? K_OTHER : K_LINK;
      }
      return K_OTHER;
    case K_MARTI:
      if (len === 4 && c0 === 0x64 && b[s + 1] === 0x65 && b[s + 2] === 0x73 && b[s + 3] === 0x74) return K_DEST;
      return K_OTHER;
  }
  return K_OTHER;
}

let seenContact = false;
let seenGroup = false;
let hasLink = false;
let martiStart = -1;
let martiEnd = -1;
/** ranges of the second and later <marti> elements (rare: a plain array is fine) */
const martiMore: number[] = [];

/** Scans the whole frame. Returns its length, or -1 with errReason / errOffset set. */
function scanBytes(b: Buffer, s: number, n: number, framing: boolean): number {
  for (let i = 0; i < NF; i++) fStart[i] = -2;
  ndests = 0;
  seenContact = seenGroup = hasLink = false;
  martiStart = martiEnd = -1;
  if (martiMore.length !== 0) martiMore.length = 0; // a runtime call even when already empty

  let p = framing ? s : skipMisc(b, s, n);
  if (p < 0) return -1;
  if (p >= n) return fail(ScanReason.empty, p);
  if (b[p] !== LT) return fail(ScanReason.textOutside, p);

  let depth = 0;
  let martiDepth = -1;
  // Invariant at the top of the loop: b[p] === '<'.
  for (;;) {
    const c1 = p + 1 < n ? b[p + 1] : -1;
    if (c1 === SLASH) {
      // end tag: must close the element on top of the stack
      const s = stackStart[depth - 1];
      const len = stackEnd[depth - 1] - s;
      let q = p + 2;
      if (q + len > n) return fail(ScanReason.endTag, p);
      for (let i = 0; i < len; i++) if (b[q + i] !== b[s + i]) return fail(ScanReason.endTag, p);
      q += len;
      let c = q < n ? b[q] : -1;
      while (c === 0x20 || c === LF || c === TAB || c === CR) c = ++q < n ? b[q] : -1;
      if (c !== GT) return fail(ScanReason.endTag, p);
      p = q + 1;
      depth--;
      if (depth === martiDepth) {
        if (martiEnd < 0) martiEnd = p;
        else martiMore.push(p);
        martiDepth = -1;
      }
      if (depth === 0) break;
    } else if (c1 === BANG) {
      if (p + 3 < n && b[p + 2] === DASH && b[p + 3] === DASH) {
        p = skipComment(b, p + 4, n);
      } else if (p + 8 < n && b[p + 2] === LSQB && b[p + 3] === 0x43 && b[p + 4] === 0x44 &&
        b[p + 5] === 0x41 && b[p + 6] === 0x54 && b[p + 7] === 0x41 && b[p + 8] === LSQB) {
        p = skipCdata(b, p + 9, n);
      } else {
        return fail(ScanReason.doctype, p);
      }
      if (p < 0) return -1;
    } else if (c1 === QM) {
      p = skipPi(b, p, n, false);
      if (p < 0) return -1;
    } else {
      // start tag: name
      const tagStart = p;
      let q = p + 1;
      if (q >= n || (nameTab[b[q]] & NAME_START) === 0) return fail(ScanReason.tagName, q);
      const ns = q;
      q = skipName(b, q, n);
      if (q < 0) return fail(ScanReason.utf8, ns);
      const ne = q;
      let kind: number;
      if (depth === 0) {
        if (ne - ns !== 5 || b[ns] !== 0x65 || b[ns + 1] !== 0x76 || b[ns + 2] !== 0x65 || b[ns + 3] !== 0x6e ||
          b[ns + 4] !== 0x74) return fail(ScanReason.notEvent, ns);
        kind = K_EVENT;
      } else {
        const parent = stackKind[depth - 1];
        kind = parent === K_OTHER ? K_OTHER : kindOf(parent, b, ns, ne);
        switch (kind) {
          case K_POINT: fStart[F_LAT] = -1; break; // -1: the element exists
          case K_CONTACT: seenContact = true; break;
          case K_GROUP: seenGroup = true; break;
          case K_LINK: hasLink = true; break;
          case K_DEST: {
            const o = ndests * 6;
            if (o === dests.length) { const d = new Int32Array(o * 2); d.set(dests); dests = d; }
            dests[o] = dests[o + 3] = -1;
            ndests++;
            break;
          }
        }
      }
      q = scanAttributes(b, q, n, kind, tagStart);
      if (q < 0) return -1;
      const selfClose = b[q - 2] === SLASH;
      // A nested <event>…</event> would end the frame early for the framer: never well-formed CoT.
      if (depth > 0 && !selfClose && ne - ns === 5 && b[ns] === 0x65 && b[ns + 1] === 0x76 && b[ns + 2] === 0x65 &&
        b[ns + 3] === 0x6e && b[ns + 4] === 0x74) return fail(ScanReason.nestedEvent, tagStart);
      if (kind === K_MARTI) {
        if (martiStart < 0) {
          martiStart = tagStart;
          if (selfClose) martiEnd = q;
        } else {
          martiMore.push(tagStart);
          if (selfClose) martiMore.push(q);
        }
        if (!selfClose) martiDepth = depth;
      }
      p = q;
      if (selfClose) {
        if (depth === 0) break;
      } else {
        if (depth === stackStart.length) growStack();
        stackStart[depth] = ns;
        stackEnd[depth] = ne;
        stackKind[depth] = kind;
        depth++;
      }
    }
    // character data up to the next '<'
    for (;;) {
      while (p < n && textTab[b[p]] === 0) p++;
      if (p >= n) return fail(ScanReason.unclosed, stackStart[depth - 1] - 1);
      const c = b[p];
      if (c === LT) break;
      if (c === AMP) {
        const q = parseRef(b, p, n);
        if (q < 0) return fail(ScanReason.reference, p);
        p = q;
      } else if (c >= 0x80) {
        const q = utf8Next(b, p, n);
        if (q < 0) return fail(ScanReason.utf8, p);
        p = q;
      } else if (c === GT) {
        if (b[p - 1] === RSQB && b[p - 2] === RSQB) return fail(ScanReason.cdataEnd, p - 2);
        p++;
      } else {
        return fail(ScanReason.char, p);
      }
    }
  }
  // the root is closed at p
  if (fStart[F_UID] < 0 || fEnd[F_UID] === fStart[F_UID]) return fail(ScanReason.noUid, s);
  if (fStart[F_TYPE] < 0 || fEnd[F_TYPE] === fStart[F_TYPE]) return fail(ScanReason.noType, s);
  if (framing) return p;
  const end = skipMisc(b, p, n);
  if (end < 0) return -1;
  if (end < n) return fail(ScanReason.trailing, end);
  return p;
}

/** Name characters from b[q]; returns the index after the name or -1 for bad UTF-8. */
function skipName(b: Buffer, q: number, n: number): number {
  for (;;) {
    while (q < n && nameAsciiTab[b[q]] !== 0) q++;
    if (q >= n || b[q] < 0x80) return q;
    q = utf8Next(b, q, n);
    if (q < 0) return -1;
  }
}

/** Attributes of a start tag from b[q] (just after the name) through '>' or '/>'. Records the
 *  ranges of interesting ones. Returns the index after the tag or -1. */
function scanAttributes(b: Buffer, q: number, n: number, kind: number, tagStart: number): number {
  let nattr = 0;
  let sig = 0;
  for (;;) {
    let c = q < n ? b[q] : -1;
    if (c === GT) return q + 1;
    let ws = false;
    while (c === 0x20 || c === LF || c === TAB || c === CR) { ws = true; c = ++q < n ? b[q] : -1; }
    if (c === GT) return q + 1;
    if (c === SLASH) {
      if (q + 1 < n && b[q + 1] === GT) return q + 2;
      return fail(q + 1 < n ? ScanReason.badSlash : ScanReason.tagUnterminated, q);
    }
    if (c < 0) return fail(ScanReason.tagUnterminated, tagStart);
    if (!ws) return fail(ScanReason.attrSpace, q);
    if ((nameTab[c] & NAME_START) === 0) return fail(ScanReason.attrName, q);
    // name
    const as = q;
    if (c < 0x80) { q++; while (q < n && nameAsciiTab[b[q]] !== 0) q++; }
    if (q < n && b[q] >= 0x80) {
      q = skipName(b, q, n);
      if (q < 0) return fail(ScanReason.utf8, as);
    }
    const ae = q;
    c = q < n ? b[q] : -1;
    while (c === 0x20 || c === LF || c === TAB || c === CR) c = ++q < n ? b[q] : -1;
    if (c !== EQ) return fail(c < 0 ? ScanReason.tagUnterminated : ScanReason.attrEq, c < 0 ? tagStart : q);
    c = ++q < n ? b[q] : -1;
    while (c === 0x20 || c === LF || c === TAB || c === CR) c = ++q < n ? b[q] : -1;
    if (c !== DQ && c !== SQ) return fail(c < 0 ? ScanReason.tagUnterminated : ScanReason.attrQuote, c < 0 ? tagStart : q);
    // value
    const vs = ++q;
    let flags = 0;
    for (;;) {
      if (c === DQ) while (q < n && attrDqTab[b[q]] === 0) q++;
      else while (q < n && attrSqTab[b[q]] === 0) q++;
      if (q >= n) return fail(ScanReason.attrUnterminated, vs - 1);
      const v = b[q];
      if (v === c) break;
      if (v === AMP) {
        q = parseRef(b, q, n);
        if (q < 0) return fail(ScanReason.reference, vs);
        flags |= V_DECODE;
      } else if (v >= 0x80) {
        q = utf8Next(b, q, n);
        if (q < 0) return fail(ScanReason.utf8, vs);
        flags |= V_UTF8;
      } else if (v === LT) {
        return fail(ScanReason.attrLt, q);
      } else if (v === TAB || v === LF || v === CR) {
        flags |= V_DECODE;
        q++;
      } else if (v === DQ || v === SQ) {
        q++; // the other quote
      } else {
        return fail(ScanReason.char, q);
      }
    }
    const ve = q++;
    // duplicate names: a 32-bit signature of (length, first, last byte) rules most out at once;
    // else pairwise for the usual handful, a hash table beyond that (linear for hostile tags)
    const alen = ae - as;
    const bit = 1 << ((alen * 7 + b[as] + b[ae - 1] * 3) & 31);
    const maybeDup = (sig & bit) !== 0;
    sig |= bit;
    if (nattr < ATTR_LINEAR_MAX) {
      if (maybeDup) for (let j = 0; j < nattr; j++) {
        const js = attrStart[j];
        if (attrEnd[j] - js !== alen) continue;
        let k = 0;
        while (k < alen && b[js + k] === b[as + k]) k++;
        if (k === alen) return fail(ScanReason.attrDuplicate, as);
      }
      attrStart[nattr] = as;
      attrEnd[nattr] = ae;
    } else {
      if (nattr === ATTR_LINEAR_MAX) {
        attrSetReset();
        for (let j = 0; j < nattr; j++) attrSetAdd(b, attrStart[j], attrEnd[j]);
      }
      if (!attrSetAdd(b, as, ae)) return fail(ScanReason.attrDuplicate, as);
    }
    nattr++;
    if (kind !== K_OTHER) {
      const f = fieldOf(kind, b, as, alen);
      if (f >= 0) {
        if (kind === K_DEST) {
          const o = (ndests - 1) * 6 + f;
          dests[o] = vs; dests[o + 1] = ve; dests[o + 2] = flags;
        } else {
          fStart[f] = vs; fEnd[f] = ve; fFlags[f] = flags;
        }
      }
    }
  }
}

function skipComment(b: Buffer, p: number, n: number): number {
  // p is just after "<!--"; "--" may only appear as part of the closing "-->"
  const start = p - 4;
  for (;;) {
    while (p < n && commentTab[b[p]] === 0) p++;
    if (p >= n) return fail(ScanReason.comment, start);
    const c = b[p];
    if (c === DASH) {
      if (p + 1 < n && b[p + 1] === DASH) {
        if (p + 2 < n && b[p + 2] === GT) return p + 3;
        return fail(ScanReason.comment, p);
      }
      p++;
    } else if (c >= 0x80) {
      p = utf8Next(b, p, n);
      if (p < 0) return fail(ScanReason.utf8, start);
    } else {
      return fail(ScanReason.char, p);
    }
  }
}

function skipCdata(b: Buffer, p: number, n: number): number {
  // p is just after "<![CDATA["
  const start = p - 9;
  for (;;) {
    while (p < n && cdataTab[b[p]] === 0) p++;
    if (p >= n) return fail(ScanReason.cdata, start);
    const c = b[p];
    if (c === RSQB) {
      if (p + 2 < n && b[p + 1] === RSQB && b[p + 2] === GT) return p + 3;
      p++;
    } else if (c >= 0x80) {
      p = utf8Next(b, p, n);
      if (p < 0) return fail(ScanReason.utf8, start);
    } else {
      return fail(ScanReason.char, p);
    }
  }
}

/** A processing instruction at b[p] === '<', b[p+1] === '?'. `decl` allows the XML declaration. */
function skipPi(b: Buffer, p: number, n: number, decl: boolean): number {
  const start = p;
  p += 2;
  if (p >= n || (nameTab[b[p]] & NAME_START) === 0) return fail(ScanReason.pi, start);
  const ts = p;
  p = skipName(b, p, n);
  if (p < 0) return fail(ScanReason.utf8, ts);
  if (p - ts === 3 && (b[ts] | 0x20) === 0x78 && (b[ts + 1] | 0x20) === 0x6d && (b[ts + 2] | 0x20) === 0x6c && !decl) {
    return fail(ScanReason.xmlDecl, start);
  }
  if (p < n && b[p] === QM) {
    if (p + 1 < n && b[p + 1] === GT) return p + 2;
    return fail(ScanReason.pi, start);
  }
  if (p >= n || !isWs(b[p])) return fail(ScanReason.pi, start);
  for (;;) {
    while (p < n && piTab[b[p]] === 0) p++;
    if (p >= n) return fail(ScanReason.pi, start);
    const c = b[p];
    if (c === QM) {
      if (p + 1 < n && b[p + 1] === GT) return p + 2;
      p++;
    } else if (c >= 0x80) {
      p = utf8Next(b, p, n);
      if (p < 0) return fail(ScanReason.utf8, start);
    } else {
      return fail(ScanReason.char, p);
    }
  }
}

/** Prolog / epilog: white space, comments and PIs (the XML declaration only at offset 0). */
function skipMisc(b: Buffer, p: number, n: number): number {
  while (p < n) {
    const c = b[p];
    if (isWs(c)) { p++; continue; }
    if (c !== LT || p + 1 >= n) return p;
    const c1 = b[p + 1];
    if (c1 === QM) {
      p = skipPi(b, p, n, p === 0);
    } else if (c1 === BANG) {
      if (p + 3 < n && b[p + 2] === DASH && b[p + 3] === DASH) p = skipComment(b, p + 4, n);
      else return fail(ScanReason.doctype, p);
    } else {
      return p;
    }
    if (p < 0) return -1;
  }
  return p;
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
  const s = fStart[f];
  return s < 0 ? undefined : text(b, s, fEnd[f], fFlags[f]);
}

function coord(b: Buffer, f: number): number {
  const s = fStart[f];
  if (s < 0) return NaN;
  if (fFlags[f] === 0) return parseDecimal(b, s, fEnd[f]);
  return numberOf(text(b, s, fEnd[f], fFlags[f]));
}

// The header: what the router reads (uid, type, staleMs, contact, dests, marti ranges, link,
// control) is made eagerly; the rest (how time start stale version point __group), which nothing on
// the hot path reads, is kept as a range of the frame's latin1 string and made on first access.
// Strings are immutable, so a lazy field stays correct after the frame Buffer is reused. Fields
// that need decoding (UTF-8, references) and every field of a large frame are made eagerly.
const NONE = -1; // packed range: absent, or already made (the value is in the cache slot)
const RANGE_BITS = 8192; // WHOLE_FRAME_MAX < RANGE_BITS: start * RANGE_BITS + end fits a small int

class Header implements CotHeader {
  readonly ok = true as const;
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
  /** latin1 string of the frame from `base` (lazy ranges index it), '' when all is eager */
  private readonly s_: string;
  private how_: string | undefined; private howR: number;
  private time_: string | undefined; private timeR: number;
  private start_: string | undefined; private startR: number;
  private stale_: string | undefined; private staleR: number;
  private version_: string | undefined; private versionR: number;
  private gname_: string | undefined; private gnameR: number;
  private grole_: string | undefined; private groleR: number;
  private point_: CotPoint | undefined;
  /** packed ranges of lat lon hae ce le (NONE: missing coordinate); undefined: point_ is made */
  private pointR: number[] | undefined;

  constructor(b: Buffer, base: number, str: string) {
    this.s_ = str;
    this.uid = field(b, F_UID)!;
    const type = field(b, F_TYPE)!;
    this.type = type;
    const ss = fStart[F_STALE];
    this.staleMs = ss < 0 ? NaN : fFlags[F_STALE] === 0 ? parseIsoMs(b, ss, fEnd[F_STALE]) : Date.parse(field(b, F_STALE)!);
    this.callsign = field(b, F_CALLSIGN);
    this.endpoint = field(b, F_ENDPOINT);
    const list: CotDest[] = [];
    for (let i = 0; i < ndests; i++) {
      const o = i * 6;
      const d: CotDest = {};
      if (dests[o] >= 0) d.callsign = text(b, dests[o], dests[o + 1], dests[o + 2]);
      if (dests[o + 3] >= 0) d.uid = text(b, dests[o + 3], dests[o + 4], dests[o + 5]);
      list.push(d);
    }
    this.dests = list;
    this.martiStart = martiStart < 0 ? -1 : martiStart - base;
    this.martiEnd = martiEnd < 0 ? -1 : martiEnd - base;
    this.martiMore = martiMore.length === 0 ? undefined : martiMore.map((x) => x - base);
    this.linkUid = field(b, F_LINK);
    this.hasLink = hasLink;
    this.control = isControlType(type);
    const lazy = str.length !== 0;
    this.howR = lazyRange(F_HOW, base, lazy); this.how_ = this.howR === NONE ? field(b, F_HOW) : undefined;
    this.timeR = lazyRange(F_TIME, base, lazy); this.time_ = this.timeR === NONE ? field(b, F_TIME) : undefined;
    this.startR = lazyRange(F_START, base, lazy); this.start_ = this.startR === NONE ? field(b, F_START) : undefined;
    this.staleR = lazyRange(F_STALE, base, lazy); this.stale_ = this.staleR === NONE ? field(b, F_STALE) : undefined;
    this.versionR = lazyRange(F_VERSION, base, lazy); this.version_ = this.versionR === NONE ? field(b, F_VERSION) : undefined;
    this.gnameR = lazyRange(F_GNAME, base, lazy); this.gname_ = this.gnameR === NONE ? field(b, F_GNAME) : undefined;
    this.groleR = lazyRange(F_GROLE, base, lazy); this.grole_ = this.groleR === NONE ? field(b, F_GROLE) : undefined;
    this.point_ = undefined;
    this.pointR = undefined;
    if (fStart[F_LAT] !== -2) {
      if (lazy && (fFlags[F_LAT] | fFlags[F_LON] | fFlags[F_HAE] | fFlags[F_CE] | fFlags[F_LE]) === 0) {
        this.pointR = [packed(F_LAT, base), packed(F_LON, base), packed(F_HAE, base), packed(F_CE, base), packed(F_LE, base)];
      } else {
        this.point_ = { lat: coord(b, F_LAT), lon: coord(b, F_LON), hae: coord(b, F_HAE), ce: coord(b, F_CE), le: coord(b, F_LE) };
      }
    }
  }

  private sub(r: number): string {
    const s = Math.floor(r / RANGE_BITS);
    return this.s_.substring(s, r - s * RANGE_BITS);
  }

  get how(): string | undefined {
    if (this.howR !== NONE) { this.how_ = this.sub(this.howR); this.howR = NONE; }
    return this.how_;
  }
  get time(): string | undefined {
    if (this.timeR !== NONE) { this.time_ = this.sub(this.timeR); this.timeR = NONE; }
    return this.time_;
  }
  get start(): string | undefined {
    if (this.startR !== NONE) { this.start_ = this.sub(this.startR); this.startR = NONE; }
    return this.start_;
  }
  get stale(): string | undefined {
    if (this.staleR !== NONE) { this.stale_ = this.sub(this.staleR); this.staleR = NONE; }
    return this.stale_;
  }
  get version(): string | undefined {
    if (this.versionR !== NONE) { this.version_ = this.sub(this.versionR); this.versionR = NONE; }
    return this.version_;
  }
  get groupName(): string | undefined {
    if (this.gnameR !== NONE) { this.gname_ = this.sub(this.gnameR); this.gnameR = NONE; }
    return this.gname_;
  }
  get groupRole(): string | undefined {
    if (this.groleR !== NONE) { this.grole_ = this.sub(this.groleR); this.groleR = NONE; }
    return this.grole_;
  }
  get point(): CotPoint | undefined {
    const r = this.pointR;
    if (r !== undefined) {
      // numberOf(text) is what parseDecimal() computes from the same plain ASCII bytes
      const c = (i: number): number => (r[i] === NONE ? NaN : numberOf(this.sub(r[i])));
      this.point_ = { lat: c(0), lon: c(1), hae: c(2), ce: c(3), le: c(4) };
      this.pointR = undefined;
    }
    return this.point_;
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

/** packed range of field f relative to base, NONE when absent */
function packed(f: number, base: number): number {
  const s = fStart[f];
  return s < 0 ? NONE : (s - base) * RANGE_BITS + (fEnd[f] - base);
}

/** packed range of a lazily made plain field; NONE when absent, eager or not plain */
function lazyRange(f: number, base: number, lazy: boolean): number {
  return lazy && fFlags[f] === 0 ? packed(f, base) : NONE;
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
