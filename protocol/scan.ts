// Hot-path header scan of one XML CoT frame: one pass over the bytes, no DOM, no regex, no
// per-byte allocation. It reads the few facts the router needs and, in the same pass, checks that
// the frame is well-formed XML an ATAK parser will accept (see protocol/README.md for the rules
// and the deliberate differences from fast-xml-parser).
import {
  AMP, BANG, CR, DASH, DQ, GT, LF, LSQB, LT, QM, RSQB, SLASH, SQ, TAB, EQ,
  NAME_CHAR, NAME_START, attrDqTab, attrSqTab, cdataTab, commentTab, decodeAttr, isWs,
  nameTab, parseRef, piTab, textTab, utf8Next,
} from './chars.ts';

export interface CotDest { callsign?: string; uid?: string }
export interface CotPoint { lat: number; lon: number; hae: number; ce: number; le: number }
export interface CotHeader {
  ok: true;
  uid: string; type: string;
  how?: string; time?: string; start?: string; stale?: string; version?: string;
  /** stale parsed to epoch ms; NaN when absent or unparseable */
  staleMs: number;
  /** first event/point; a missing or unparseable coordinate is NaN */
  point?: CotPoint;
  /** detail/contact (first) */
  callsign?: string; endpoint?: string;
  /** detail/__group (first) */
  groupName?: string; groupRole?: string;
  /** detail/marti/dest entries in document order (of every marti), [] when none */
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
} as const;

// Element kinds: only these are looked at; everything else is validated and skipped.
const K_OTHER = 0, K_EVENT = 1, K_POINT = 2, K_DETAIL = 3, K_CONTACT = 4, K_GROUP = 5,
  K_MARTI = 6, K_DEST = 7, K_LINK = 8;

const bytes = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));
const N_EVENT = bytes('event'), N_POINT = bytes('point'), N_DETAIL = bytes('detail'),
  N_CONTACT = bytes('contact'), N_GROUP = bytes('__group'), N_MARTI = bytes('marti'),
  N_DEST = bytes('dest'), N_LINK = bytes('link');

function nameIs(b: Uint8Array, s: number, e: number, name: Uint8Array): boolean {
  const len = name.length;
  if (e - s !== len) return false;
  for (let i = 0; i < len; i++) if (b[s + i] !== name[i]) return false;
  return true;
}

// Attribute-name ids for the elements we read (0 = not interesting).
const A_NONE = 0, A_UID = 1, A_TYPE = 2, A_HOW = 3, A_TIME = 4, A_START = 5, A_STALE = 6,
  A_VERSION = 7, A_LAT = 8, A_LON = 9, A_HAE = 10, A_CE = 11, A_LE = 12, A_CALLSIGN = 13,
  A_ENDPOINT = 14, A_NAME = 15, A_ROLE = 16;
const attrNames: [Uint8Array, number][] = [
  ['uid', A_UID], ['type', A_TYPE], ['how', A_HOW], ['time', A_TIME], ['start', A_START],
  ['stale', A_STALE], ['version', A_VERSION], ['lat', A_LAT], ['lon', A_LON], ['hae', A_HAE],
  ['ce', A_CE], ['le', A_LE], ['callsign', A_CALLSIGN], ['endpoint', A_ENDPOINT],
  ['name', A_NAME], ['role', A_ROLE],
].map(([s, id]) => [bytes(s as string), id as number]);

function attrId(b: Uint8Array, s: number, e: number): number {
  for (let i = 0; i < attrNames.length; i++) {
    const [name, id] = attrNames[i];
    if (nameIs(b, s, e, name)) return id;
  }
  return A_NONE;
}

// Scratch reused by every call (scan is synchronous and never re-entered): the open-element stack
// and the current element's attribute names, grown on demand, so hostile depth or attribute
// counts cost memory linear in the frame and nothing per ordinary event.
let stackStart = new Int32Array(64);
let stackEnd = new Int32Array(64);
let stackKind = new Uint8Array(64);
let attrStart = new Int32Array(16);
let attrEnd = new Int32Array(16);
const ATTR_LINEAR_MAX = 8; // beyond this many attributes, duplicate checks use a Set

function growStack(): void {
  const len = stackStart.length * 2;
  const s = new Int32Array(len); s.set(stackStart); stackStart = s;
  const e = new Int32Array(len); e.set(stackEnd); stackEnd = e;
  const k = new Uint8Array(len); k.set(stackKind); stackKind = k;
}

let errReason = '';
let errOffset = 0;
/** records the first error; always returns -1 so callers can `return fail(...)` */
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

function value(b: Buffer, s: number, e: number, flags: number): string {
  if (flags === 0) return b.toString('latin1', s, e);
  if (flags === F_UTF8) return b.toString('utf8', s, e);
  return decodeAttr(b, s, e);
}
const F_UTF8 = 1, F_DECODE = 2;

function num(s: string | undefined): number {
  return s === undefined || s.length === 0 ? NaN : Number(s);
}

function newHeader(): CotHeader {
  return {
    ok: true, uid: '', type: '', how: undefined, time: undefined, start: undefined,
    stale: undefined, version: undefined, staleMs: NaN, point: undefined, callsign: undefined,
    endpoint: undefined, groupName: undefined, groupRole: undefined, dests: [],
    martiStart: -1, martiEnd: -1, martiMore: undefined, linkUid: undefined, hasLink: false, control: false,
  };
}

let hasUid = false;
let hasType = false;
let seenContact = false;
let seenGroup = false;
let curDest: CotDest | undefined;
const pointStrs: (string | undefined)[] = [undefined, undefined, undefined, undefined, undefined];

/** Stores an attribute of an element we read. */
function capture(h: CotHeader, kind: number, b: Buffer, as: number, ae: number, vs: number, ve: number, flags: number): void {
  const id = attrId(b, as, ae);
  if (id === A_NONE) return;
  switch (kind) {
    case K_EVENT:
      switch (id) {
        case A_UID: h.uid = value(b, vs, ve, flags); hasUid = true; break;
        case A_TYPE: h.type = value(b, vs, ve, flags); hasType = true; break;
        case A_HOW: h.how = value(b, vs, ve, flags); break;
        case A_TIME: h.time = value(b, vs, ve, flags); break;
        case A_START: h.start = value(b, vs, ve, flags); break;
        case A_STALE: h.stale = value(b, vs, ve, flags); break;
        case A_VERSION: h.version = value(b, vs, ve, flags); break;
      }
      break;
    case K_POINT:
      if (id >= A_LAT && id <= A_LE) pointStrs[id - A_LAT] = value(b, vs, ve, flags);
      break;
    case K_CONTACT:
      if (id === A_CALLSIGN) h.callsign = value(b, vs, ve, flags);
      else if (id === A_ENDPOINT) h.endpoint = value(b, vs, ve, flags);
      break;
    case K_GROUP:
      if (id === A_NAME) h.groupName = value(b, vs, ve, flags);
      else if (id === A_ROLE) h.groupRole = value(b, vs, ve, flags);
      break;
    case K_DEST:
      if (id === A_CALLSIGN) curDest!.callsign = value(b, vs, ve, flags);
      else if (id === A_UID) curDest!.uid = value(b, vs, ve, flags);
      break;
    case K_LINK:
      if (id === A_UID) h.linkUid = value(b, vs, ve, flags);
      break;
  }
}

/** Skips character data of a comment / CDATA / PI body up to its terminator. Returns the index
 *  after the terminator or -1. `tab` flags the terminator's first byte. */
function skipComment(b: Buffer, p: number, n: number): number {
  // p is just after "<!--"
  const start = p - 4;
  while (p < n) {
    const c = b[p];
    if (commentTab[c] === 0) { p++; continue; }
    if (c === DASH) {
      if (p + 1 < n && b[p + 1] === DASH) {
        if (p + 2 < n && b[p + 2] === GT) return p + 3;
        return fail(ScanReason.comment, p); // "--" inside a comment
      }
      p++;
      continue;
    }
    if (c >= 0x80) { p = utf8Next(b, p, n); if (p < 0) return fail(ScanReason.utf8, start); continue; }
    return fail(ScanReason.char, p);
  }
  return fail(ScanReason.comment, start);
}

function skipCdata(b: Buffer, p: number, n: number): number {
  // p is just after "<![CDATA["
  const start = p - 9;
  while (p < n) {
    const c = b[p];
    if (cdataTab[c] === 0) { p++; continue; }
    if (c === RSQB) {
      if (p + 2 < n && b[p + 1] === RSQB && b[p + 2] === GT) return p + 3;
      p++;
      continue;
    }
    if (c >= 0x80) { p = utf8Next(b, p, n); if (p < 0) return fail(ScanReason.utf8, start); continue; }
    return fail(ScanReason.char, p);
  }
  return fail(ScanReason.cdata, start);
}

/** A processing instruction at b[p] === '<', b[p+1] === '?'. `decl` allows the XML declaration. */
function skipPi(b: Buffer, p: number, n: number, decl: boolean): number {
  const start = p;
  p += 2;
  if (p >= n || (nameTab[b[p]] & NAME_START) === 0) return fail(ScanReason.pi, start);
  const ts = p;
  while (p < n && (nameTab[b[p]] & NAME_CHAR) !== 0) {
    if (b[p] >= 0x80) { p = utf8Next(b, p, n); if (p < 0) return fail(ScanReason.utf8, ts); } else p++;
  }
  if (p - ts === 3 && (b[ts] | 0x20) === 0x78 && (b[ts + 1] | 0x20) === 0x6d && (b[ts + 2] | 0x20) === 0x6c) {
    if (!decl) return fail(ScanReason.xmlDecl, start);
  }
  if (p < n && b[p] === QM) {
    if (p + 1 < n && b[p + 1] === GT) return p + 2;
    return fail(ScanReason.pi, start);
  }
  if (p >= n || !isWs(b[p])) return fail(ScanReason.pi, start);
  while (p < n) {
    const c = b[p];
    if (piTab[c] === 0) { p++; continue; }
    if (c === QM) {
      if (p + 1 < n && b[p + 1] === GT) return p + 2;
      p++;
      continue;
    }
    if (c >= 0x80) { p = utf8Next(b, p, n); if (p < 0) return fail(ScanReason.utf8, start); continue; }
    return fail(ScanReason.char, p);
  }
  return fail(ScanReason.pi, start);
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
      if (p < 0) return -1;
    } else if (c1 === BANG) {
      if (p + 3 < n && b[p + 2] === DASH && b[p + 3] === DASH) {
        p = skipComment(b, p + 4, n);
        if (p < 0) return -1;
      } else {
        return fail(ScanReason.doctype, p);
      }
    } else {
      return p;
    }
  }
  return p;
}

function scanFrame(b: Buffer): CotHeader | ScanError {
  const r = scanInto(b);
  if (r === null) return { ok: false, reason: errReason, offset: errOffset };
  return r;
}

function scanInto(b: Buffer): CotHeader | null {
  const n = b.length;
  const h = newHeader();
  hasUid = hasType = seenContact = seenGroup = false;
  let hasPoint = false;
  curDest = undefined;
  pointStrs[0] = pointStrs[1] = pointStrs[2] = pointStrs[3] = pointStrs[4] = undefined;

  let p = skipMisc(b, 0, n);
  if (p < 0) return null;
  if (p >= n) { fail(ScanReason.empty, p); return null; }
  if (b[p] !== LT) { fail(ScanReason.textOutside, p); return null; }

  let depth = 0;
  let martiDepth = -1;
  let attrSet: Set<string> | undefined;

  // Invariant at the top of the loop: b[p] === '<'.
  for (;;) {
    const c1 = p + 1 < n ? b[p + 1] : -1;
    if (c1 === SLASH) {
      // end tag: must close the element on top of the stack
      const s = stackStart[depth - 1];
      const len = stackEnd[depth - 1] - s;
      let q = p + 2;
      if (q + len > n) { fail(ScanReason.endTag, p); return null; }
      for (let i = 0; i < len; i++) {
        if (b[q + i] !== b[s + i]) { fail(ScanReason.endTag, p); return null; }
      }
      q += len;
      while (q < n && isWs(b[q])) q++;
      if (q >= n || b[q] !== GT) { fail(ScanReason.endTag, p); return null; }
      p = q + 1;
      depth--;
      if (depth === martiDepth) {
        if (h.martiEnd < 0) h.martiEnd = p;
        else h.martiMore!.push(p);
        martiDepth = -1;
      }
      if (depth === 0) break;
    } else if (c1 === BANG) {
      if (p + 3 < n && b[p + 2] === DASH && b[p + 3] === DASH) {
        p = skipComment(b, p + 4, n);
        if (p < 0) return null;
      } else if (p + 8 < n && b[p + 2] === LSQB && b[p + 3] === 0x43 && b[p + 4] === 0x44 &&
        b[p + 5] === 0x41 && b[p + 6] === 0x54 && b[p + 7] === 0x41 && b[p + 8] === LSQB) {
        p = skipCdata(b, p + 9, n);
        if (p < 0) return null;
      } else {
        fail(ScanReason.doctype, p);
        return null;
      }
    } else if (c1 === QM) {
      p = skipPi(b, p, n, false);
      if (p < 0) return null;
    } else {
      // start tag
      const tagStart = p;
      let q = p + 1;
      if (q >= n || (nameTab[b[q]] & NAME_START) === 0) { fail(ScanReason.tagName, q); return null; }
      const ns = q;
      while (q < n && (nameTab[b[q]] & NAME_CHAR) !== 0) {
        if (b[q] >= 0x80) { q = utf8Next(b, q, n); if (q < 0) { fail(ScanReason.utf8, ns); return null; } } else q++;
      }
      const ne = q;
      let kind = K_OTHER;
      if (depth === 0) {
        if (!nameIs(b, ns, ne, N_EVENT)) { fail(ScanReason.notEvent, ns); return null; }
        kind = K_EVENT;
      } else {
        switch (stackKind[depth - 1]) {
          case K_EVENT:
            if (!hasPoint && nameIs(b, ns, ne, N_POINT)) { kind = K_POINT; hasPoint = true; }
            else if (nameIs(b, ns, ne, N_DETAIL)) kind = K_DETAIL;
            break;
          case K_DETAIL:
            if (!seenContact && nameIs(b, ns, ne, N_CONTACT)) { kind = K_CONTACT; seenContact = true; }
            else if (!seenGroup && nameIs(b, ns, ne, N_GROUP)) { kind = K_GROUP; seenGroup = true; }
            else if (nameIs(b, ns, ne, N_MARTI)) kind = K_MARTI;
            else if (nameIs(b, ns, ne, N_LINK)) {
              if (!h.hasLink) { kind = K_LINK; h.hasLink = true; }
            }
            break;
          case K_MARTI:
            if (nameIs(b, ns, ne, N_DEST)) { kind = K_DEST; curDest = {}; h.dests.push(curDest); }
            break;
        }
      }
      // attributes
      let nattr = 0;
      let selfClose = false;
      attrSet = undefined;
      for (;;) {
        if (q >= n) { fail(ScanReason.tagUnterminated, tagStart); return null; }
        let c = b[q];
        let ws = false;
        while (c === 0x20 || c === LF || c === TAB || c === CR) {
          ws = true;
          if (++q >= n) { fail(ScanReason.tagUnterminated, tagStart); return null; }
          c = b[q];
        }
        if (c === GT) { q++; break; }
        if (c === SLASH) {
          if (q + 1 < n && b[q + 1] === GT) { q += 2; selfClose = true; break; }
          fail(ScanReason.badSlash, q); return null;
        }
        if (!ws) { fail(ScanReason.attrSpace, q); return null; }
        if ((nameTab[c] & NAME_START) === 0) { fail(ScanReason.attrName, q); return null; }
        const as = q;
        while (q < n && (nameTab[b[q]] & NAME_CHAR) !== 0) {
          if (b[q] >= 0x80) { q = utf8Next(b, q, n); if (q < 0) { fail(ScanReason.utf8, as); return null; } } else q++;
        }
        const ae = q;
        while (q < n && isWs(b[q])) q++;
        if (q >= n || b[q] !== EQ) { fail(ScanReason.attrEq, q); return null; }
        q++;
        while (q < n && isWs(b[q])) q++;
        if (q >= n) { fail(ScanReason.attrQuote, q); return null; }
        const quote = b[q];
        if (quote !== DQ && quote !== SQ) { fail(ScanReason.attrQuote, q); return null; }
        const tab = quote === DQ ? attrDqTab : attrSqTab;
        const vs = ++q;
        let flags = 0;
        for (;;) {
          if (q >= n) { fail(ScanReason.attrUnterminated, vs - 1); return null; }
          c = b[q];
          if (tab[c] === 0) { q++; continue; }
          if (c === quote) break;
          if (c === AMP) {
            q = parseRef(b, q, n);
            if (q < 0) { fail(ScanReason.reference, vs); return null; }
            flags |= F_DECODE;
          } else if (c >= 0x80) {
            q = utf8Next(b, q, n);
            if (q < 0) { fail(ScanReason.utf8, vs); return null; }
            flags |= F_UTF8;
          } else if (c === LT) {
            fail(ScanReason.attrLt, q); return null;
          } else if (c === TAB || c === LF || c === CR) {
            flags |= F_DECODE;
            q++;
          } else {
            fail(ScanReason.char, q); return null;
          }
        }
        const ve = q++;
        // duplicate attribute names: pairwise for the usual handful, a Set beyond that
        const alen = ae - as;
        if (nattr < ATTR_LINEAR_MAX) {
          for (let j = 0; j < nattr; j++) {
            const js = attrStart[j];
            if (attrEnd[j] - js !== alen) continue;
            let k = 0;
            while (k < alen && b[js + k] === b[as + k]) k++;
            if (k === alen) { fail(ScanReason.attrDuplicate, as); return null; }
          }
          attrStart[nattr] = as;
          attrEnd[nattr] = ae;
        } else {
          if (attrSet === undefined) {
            attrSet = new Set();
            for (let j = 0; j < nattr; j++) attrSet.add(b.toString('latin1', attrStart[j], attrEnd[j]));
          }
          const key = b.toString('latin1', as, ae);
          if (attrSet.has(key)) { fail(ScanReason.attrDuplicate, as); return null; }
          attrSet.add(key);
        }
        nattr++;
        if (kind !== K_OTHER) capture(h, kind, b, as, ae, vs, ve, flags);
      }
      attrSet = undefined;
      if (kind === K_MARTI) {
        if (h.martiStart < 0) {
          h.martiStart = tagStart;
          if (selfClose) h.martiEnd = q;
          else martiDepth = depth;
        } else {
          (h.martiMore ??= []).push(tagStart);
          if (selfClose) h.martiMore.push(q);
          else martiDepth = depth;
        }
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
      if (p >= n) {
        fail(ScanReason.unclosed, stackStart[depth - 1] - 1);
        return null;
      }
      const c = b[p];
      if (textTab[c] === 0) { p++; continue; }
      if (c === LT) break;
      if (c === AMP) {
        const q = parseRef(b, p, n);
        if (q < 0) { fail(ScanReason.reference, p); return null; }
        p = q;
      } else if (c >= 0x80) {
        const q = utf8Next(b, p, n);
        if (q < 0) { fail(ScanReason.utf8, p); return null; }
        p = q;
      } else if (c === GT) {
        if (b[p - 1] === RSQB && b[p - 2] === RSQB) { fail(ScanReason.cdataEnd, p - 2); return null; }
        p++;
      } else {
        fail(ScanReason.char, p);
        return null;
      }
    }
  }
  // root closed at p
  const end = skipMisc(b, p, n);
  if (end < 0) return null;
  if (end < n) { fail(ScanReason.trailing, end); return null; }
  if (!hasUid || h.uid.length === 0) { fail(ScanReason.noUid, 0); return null; }
  if (!hasType || h.type.length === 0) { fail(ScanReason.noType, 0); return null; }
  if (hasPoint) {
    h.point = { lat: num(pointStrs[0]), lon: num(pointStrs[1]), hae: num(pointStrs[2]), ce: num(pointStrs[3]), le: num(pointStrs[4]) };
  }
  if (h.stale !== undefined) h.staleMs = Date.parse(h.stale);
  h.control = isControlType(h.type);
  return h;
}

/** t-x-c-* (ping t-x-c-t, pong t-x-c-t-r) and t-x-takp-* (protocol negotiation). */
export function isControlType(type: string): boolean {
  return type.startsWith('t-x-c-') || type.startsWith('t-x-takp-');
}
