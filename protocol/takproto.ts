// TAK Protocol version 1 (protobuf) <-> CoT XML, I/O-free. The schema (protocol/proto/*.proto) is
// small and fixed, so the wire format is hand-rolled here: varints, doubles and length-delimited
// fields, no code generation and no reflection at run time.
//
// XML -> TakMessage (encode) reads an XML frame the scan has already accepted as well-formed.
// Detail mapping: a child of <detail> moves into a typed field only if the whole element maps
// (every attribute has a field and, contact's endpoint aside, is there — ATAK rebuilds each with all
// its attributes —, no content, the element appears once, and no value would change meaning:
// strings non-empty, doubles finite plain decimals, battery a canonical integer up to 2^31-1);
// everything else, comments included, stays byte for byte in xmlDetail (the <detail> content with
// the typed elements cut out).
//
// TakMessage -> XML (decode) checks every length against the message; bad input throws
// TakProtoError. The XML it returns still goes through the scan like any XML frame.
//
// Lost by design (TAK Protocol has no field for them): attributes of <event> other than
// uid/type/how/access/qos/opex/time/start/stale (version is always "2.0" on decode), attributes of
// <point> other than lat/lon/hae/ce/le, children of <event> other than the first <point> and
// <detail>, attributes of <detail>, time precision below the millisecond, and the spelling of
// numbers (lat="50.10" comes back as "50.1"; integers as "9999999.0"). A missing hae/ce/le is
// written 9999999 (unknown); an event without a point with numeric lat/lon throws Unconvertible.
import { AMP, CR, DQ, GT, LF, LT, QM, SLASH, SQ, TAB, BANG, DASH, RSQB } from './chars.ts';
import { decodeAttr, latin1 } from './chars.ts';
import { escapeAttr } from './xml.ts';
import { cotTimeMs } from './time.ts';

/** First byte of every streaming TAK protobuf message. */
export const TAK_MAGIC = 0xbf;
/** ATAK refuses larger streamed messages: 0xBF + length + TakMessage stays below 64 KiB. */
export const MAX_STREAM_MESSAGE = 65535;

export class TakProtoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TakProtoError';
  }
}

/** A well-formed event TAK Protocol cannot carry without changing its meaning (a <point> without
 *  numbers). Not sent to protobuf clients; XML clients get it as it is. */
export class Unconvertible extends TakProtoError {
  constructor(message: string) {
    super(message);
    this.name = 'Unconvertible';
  }
}

// ---- wire format: writing ----------------------------------------------------------------------

// Wire types
const VARINT = 0, I64 = 1, LEN = 2, I32 = 5;

/** Growable scratch buffer reused by every encode (encode is synchronous, never re-entered). */
const W = { out: Buffer.allocUnsafe(8192), pos: 0 };
const KEEP_OUT_MAX = 1 << 20;

function ensure(n: number): void {
  if (W.pos + n <= W.out.length) return;
  let cap = W.out.length * 2;
  while (cap < W.pos + n) cap *= 2;
  const next = Buffer.allocUnsafe(cap);
  W.out.copy(next, 0, 0, W.pos);
  W.out = next;
}

function writeVarint(v: number): void {
  ensure(10);
  while (v >= 0x80) {
    W.out[W.pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  W.out[W.pos++] = v;
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) { v = Math.floor(v / 0x80); n++; }
  return n;
}

function tag(field: number, wire: number): void {
  ensure(1);
  W.out[W.pos++] = (field << 3) | wire; // every field number here is < 16: one byte
}

function writeDouble(field: number, v: number): void {
  if (v === 0 && !Object.is(v, -0)) return; // proto3: the default is not written
  tag(field, I64);
  ensure(8);
  W.out.writeDoubleLE(v, W.pos);
  W.pos += 8;
}

function writeUint(field: number, v: number): void {
  if (v === 0) return;
  tag(field, VARINT);
  writeVarint(v);
}

function writeString(field: number, s: string): void {
  if (s.length === 0) return;
  tag(field, LEN);
  const len = Buffer.byteLength(s, 'utf8');
  writeVarint(len);
  ensure(len);
  W.pos += W.out.write(s, W.pos, 'utf8');
}

/** A string field straight from bytes (already UTF-8). */
function writeBytes(field: number, b: Buffer, s: number, e: number): void {
  if (e <= s) return;
  tag(field, LEN);
  writeVarint(e - s);
  copyIn(b, s, e);
}

/** Appends b[s, e) to the output; short runs byte by byte (a native copy costs more than it saves). */
function copyIn(b: Buffer, s: number, e: number): void {
  const len = e - s;
  ensure(len);
  if (len < 96) {
    const o = W.out;
    let p = W.pos;
    for (let i = s; i < e; i++) o[p++] = b[i];
  } else {
    b.copy(W.out, W.pos, s, e);
  }
  W.pos += len;
}

/** Starts an embedded message: returns where its content begins (one byte reserved for the length). */
function beginMessage(field: number): number {
  tag(field, LEN);
  ensure(1);
  W.pos++;
  return W.pos;
}

/** Ends an embedded message: writes its length, moving the content when the length needs more bytes. */
function endMessage(start: number): void {
  const len = W.pos - start;
  const ls = varintSize(len);
  if (ls > 1) {
    ensure(ls - 1);
    W.out.copyWithin(start + ls - 1, start, W.pos);
    W.pos += ls - 1;
  }
  let p = start - 1;
  let v = len;
  while (v >= 0x80) { W.out[p++] = (v & 0x7f) | 0x80; v >>>= 7; }
  W.out[p] = v;
}

// ---- XML reading (of a frame the scan accepted) -------------------------------------------------

// Attributes of the current start tag: [nameStart, nameEnd, valueStart, valueEnd] * count.
/** attrs: [nameStart, nameEnd, valueStart, valueEnd] * n; end: index after the tag's '>';
 *  self: it ended with '/>' */
const T = { attrs: new Int32Array(64), n: 0, end: 0, self: false };

function isWs(c: number): boolean {
  return c === 0x20 || c === LF || c === TAB || c === CR;
}

/** Reads the start tag whose name begins at p (just after '<'); returns the name end. Fills attrs. */
function readStartTag(b: Buffer, p: number, n: number): number {
  let q = p;
  while (q < n && !isWs(b[q]) && b[q] !== GT && b[q] !== SLASH) q++;
  const nameEnd = q;
  T.n = 0;
  for (;;) {
    while (q < n && isWs(b[q])) q++;
    if (q >= n) throw new TakProtoError('unterminated tag');
    const c = b[q];
    if (c === GT) { T.end = q + 1; T.self = false; return nameEnd; }
    if (c === SLASH) {
      if (q + 1 >= n || b[q + 1] !== GT) throw new TakProtoError("expected '>' after '/'");
      T.end = q + 2;
      T.self = true;
      return nameEnd;
    }
    const as = q;
    while (q < n && b[q] !== 0x3d /* = */ && !isWs(b[q]) && b[q] !== GT) q++;
    const ae = q;
    while (q < n && isWs(b[q])) q++;
    if (q >= n || b[q] !== 0x3d) throw new TakProtoError("expected '='");
    q++;
    while (q < n && isWs(b[q])) q++;
    const quote = b[q];
    if (quote !== DQ && quote !== SQ) throw new TakProtoError('attribute value not quoted');
    const vs = q + 1;
    let ve = vs;
    while (ve < n && b[ve] !== quote) ve++; // values are short: no native call
    if (ve >= n) throw new TakProtoError('unterminated attribute value');
    if (T.n * 4 + 4 > T.attrs.length) { const a = new Int32Array(T.attrs.length * 2); a.set(T.attrs); T.attrs = a; }
    const i = T.n++ * 4;
    T.attrs[i] = as; T.attrs[i + 1] = ae; T.attrs[i + 2] = vs; T.attrs[i + 3] = ve;
    q = ve + 1;
  }
}

/** Skips a comment, CDATA section or PI starting at b[p] === '<'. Returns the index after it. */
function skipSpecial(b: Buffer, p: number, n: number): number {
  let end: number;
  if (b[p + 1] === QM) end = indexOf2(b, p + 2, QM, GT);
  else if (b[p + 2] === DASH) end = indexOf3(b, p + 4, DASH, DASH, GT);
  else end = indexOf3(b, p + 9, RSQB, RSQB, GT);
  if (end < 0 || end > n) throw new TakProtoError('unterminated comment, CDATA or PI');
  return end;
}

function indexOf2(b: Buffer, p: number, c1: number, c2: number): number {
  for (;;) {
    const q = b.indexOf(c1, p);
    if (q < 0 || q + 1 >= b.length) return -1;
    if (b[q + 1] === c2) return q + 2;
    p = q + 1;
  }
}

function indexOf3(b: Buffer, p: number, c1: number, c2: number, c3: number): number {
  for (;;) {
    const q = b.indexOf(c1, p);
    if (q < 0 || q + 2 >= b.length) return -1;
    if (b[q + 1] === c2 && b[q + 2] === c3) return q + 3;
    p = q + 1;
  }
}

/** p is just after a start tag's '>'; returns the index of the '<' of its matching end tag. */
function skipContent(b: Buffer, p: number, n: number): number {
  let depth = 1;
  for (;;) {
    const q = b.indexOf(LT, p);
    if (q < 0 || q >= n) throw new TakProtoError('unclosed element');
    const c = b[q + 1];
    if (c === SLASH) {
      if (--depth === 0) return q;
      const g = b.indexOf(GT, q);
      if (g < 0) throw new TakProtoError('unterminated end tag');
      p = g + 1;
    } else if (c === BANG || c === QM) {
      p = skipSpecial(b, q, n);
    } else {
      readStartTag(b, q + 1, n);
      if (!T.self) depth++;
      p = T.end;
    }
  }
}

/** Index after the end tag whose '<' is at q. */
function afterEndTag(b: Buffer, q: number): number {
  const g = b.indexOf(GT, q);
  if (g < 0) throw new TakProtoError('unterminated end tag');
  return g + 1;
}

function nameIs(b: Buffer, s: number, e: number, name: Buffer): boolean {
  const len = name.length;
  if (e - s !== len) return false;
  for (let i = 0; i < len; i++) if (b[s + i] !== name[i]) return false; // short names: no native call
  return true;
}

const N = (s: string) => Buffer.from(s, 'latin1');
const N_EVENT = N('event'), N_POINT = N('point'), N_DETAIL = N('detail');
/** CotEvent field number -> <event> attribute name */
const EVENT_ATTRS = ['', 'type', 'access', 'qos', 'opex', 'uid', 'time', 'start', 'stale', 'how'].map(N);
const evAttr = new Int32Array(10);
/** <point> attribute names in field order (10..14) */
const POINT_ATTRS = ['lat', 'lon', 'hae', 'ce', 'le'].map(N);
const pointVal = new Float64Array(5);
/** CoT's "unknown" for hae, ce and le */
const POINT_NO_VALUE = 9999999;

/** A value needs decoding (references, or white space a parser normalises) unless it has none of &, tab, LF, CR. */
function plainValue(b: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) {
    const c = b[i];
    if (c === AMP || c === TAB || c === LF || c === CR) return false;
  }
  return true;
}

function attrString(b: Buffer, s: number, e: number): string {
  return plainValue(b, s, e) ? b.toString('utf8', s, e) : decodeAttr(b, s, e);
}

/** Writes an attribute value as a string field: bytes copied when no decoding is needed. */
function writeAttr(field: number, b: Buffer, s: number, e: number): void {
  if (plainValue(b, s, e)) writeBytes(field, b, s, e);
  else writeString(field, decodeAttr(b, s, e));
}

/** CoT time -> ms since the epoch; 0 (not written) when absent, unparseable or before 1970. */
function timeMs(b: Buffer, s: number, e: number): number {
  if (e <= s) return 0;
  let ms = isoUtc(b, s, e);
  if (ms < 0) ms = cotTimeMs(attrString(b, s, e));
  return ms > 0 ? ms : 0;
}

function digits(b: Buffer, p: number, n: number): number {
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = b[p + i] - 0x30;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/** The usual CoT form, YYYY-MM-DDTHH:MM:SS[.fff…]Z, read without building a string; -1 otherwise
 *  (the caller falls back to cotTimeMs). Fractions beyond milliseconds are cut, as Date.parse does. */
function isoUtc(b: Buffer, s: number, e: number): number {
  if (e - s < 20 || b[e - 1] !== 0x5a /* Z */ || b[s + 4] !== DASH || b[s + 7] !== DASH || b[s + 10] !== 0x54 /* T */ ||
    b[s + 13] !== 0x3a || b[s + 16] !== 0x3a) return -1;
  const y = digits(b, s, 4), mo = digits(b, s + 5, 2), d = digits(b, s + 8, 2);
  const h = digits(b, s + 11, 2), mi = digits(b, s + 14, 2), sec = digits(b, s + 17, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59) return -1;
  let ms = 0;
  let p = s + 19;
  if (p < e - 1) {
    if (b[p] !== 0x2e /* . */) return -1;
    p++;
    const fs = p;
    for (; p < e - 1; p++) {
      const c = b[p] - 0x30;
      if (c < 0 || c > 9) return -1;
      if (p - fs < 3) ms = ms * 10 + c;
    }
    if (p === fs) return -1;
    for (let k = p - fs; k < 3; k++) ms *= 10;
  }
  const t = Date.UTC(y, mo - 1, d, h, mi, sec, ms);
  // a day the month does not have (Feb 30) is not a date: let Date.parse decide
  return new Date(t).getUTCDate() === d ? t : -1;
}

/** A plain decimal number (what String(Number(x)) can stand for): [+-]digits[.digits][e[+-]digits]. */
function isDecimal(b: Buffer, s: number, e: number): boolean {
  let p = s;
  if (p < e && (b[p] === 0x2b || b[p] === 0x2d)) p++;
  let digits = 0;
  while (p < e && b[p] >= 0x30 && b[p] <= 0x39) { p++; digits++; }
  if (p < e && b[p] === 0x2e) { p++; while (p < e && b[p] >= 0x30 && b[p] <= 0x39) { p++; digits++; } }
  if (digits === 0) return false;
  if (p < e && (b[p] === 0x65 || b[p] === 0x45)) {
    p++;
    if (p < e && (b[p] === 0x2b || b[p] === 0x2d)) p++;
    let ed = 0;
    while (p < e && b[p] >= 0x30 && b[p] <= 0x39) { p++; ed++; }
    if (ed === 0) return false;
  }
  return p === e;
}

/** A canonical uint32 ("007" or "+7" would not print back the same); -1 when not one. */
function uint32Value(b: Buffer, s: number, e: number): number {
  const len = e - s;
  if (len === 0 || len > 10 || (b[s] === 0x30 && len > 1)) return -1;
  let v = 0;
  for (let p = s; p < e; p++) {
    const c = b[p];
    if (c < 0x30 || c > 0x39) return -1;
    v = v * 10 + (c - 0x30);
  }
  return v <= 0xffffffff ? v : -1;
}

// Typed detail elements: name, Detail field number, attribute names in field order, value kinds,
// and which attributes are optional. ATAK (commo's CoTMessage) is the reference on both sides: it
// moves an element into its field only when every attribute is there (contact's endpoint aside),
// and when it turns a field back into XML it writes every attribute, an empty string included
// (contact's endpoint only when non-empty). An element we moved without, say, its role would reach
// an ATAK with role="" added: so the same presence rule here, and the same printing on decode.
const STR = 0, DBL = 1, U32 = 2;
interface TypedSpec {
  name: Buffer; field: number; attrs: Buffer[]; kinds: number[];
  /** attributes that may be absent (bit k = attrs[k]); absent or empty, they are not written back */
  optional: number;
  /** for decode: '<name' and ' attr="' per attribute */
  tag: string; prefix: string[];
}
const TYPED: TypedSpec[] = ([
  { name: N('contact'), field: 2, attrs: [N('endpoint'), N('callsign')], kinds: [STR, STR], optional: 1 },
  { name: N('__group'), field: 3, attrs: [N('name'), N('role')], kinds: [STR, STR], optional: 0 },
  { name: N('precisionlocation'), field: 4, attrs: [N('geopointsrc'), N('altsrc')], kinds: [STR, STR], optional: 0 },
  { name: N('status'), field: 5, attrs: [N('battery')], kinds: [U32], optional: 0 },
  { name: N('takv'), field: 6, attrs: [N('device'), N('platform'), N('os'), N('version')], kinds: [STR, STR, STR, STR], optional: 0 },
  { name: N('track'), field: 7, attrs: [N('speed'), N('course')], kinds: [DBL, DBL], optional: 0 },
] as Array<Omit<TypedSpec, 'tag' | 'prefix'>>).map((t) => ({
  ...t, tag: t.name.toString('latin1'), prefix: t.attrs.map((a) => ` ${a.toString('latin1')}="`),
}));
/** ATAK reads battery as a C int and clamps larger values on the way back */
const MAX_BATTERY = 0x7fffffff;
const NT = TYPED.length;

function typedIndex(b: Buffer, s: number, e: number): number {
  for (let i = 0; i < NT; i++) if (nameIs(b, s, e, TYPED[i].name)) return i;
  return -1;
}

// Per-encode scratch: for each typed kind, how often it appears and where the one candidate is.
const tCount = new Int32Array(NT);
const tStart = new Int32Array(NT); // '<' of the element
const tEnd = new Int32Array(NT); // index after it
// attribute value ranges of the candidate, per attribute slot: -1 when absent
const tVal = TYPED.map((t) => new Int32Array(t.attrs.length * 2));
const tOk = new Uint8Array(NT);

/** Checks the attributes of the current start tag against typed spec i; records the values. */
function typedAttrsMap(b: Buffer, i: number): boolean {
  const spec = TYPED[i];
  const vals = tVal[i];
  vals.fill(-1);
  for (let a = 0; a < T.n; a++) {
    const as = T.attrs[a * 4], ae = T.attrs[a * 4 + 1], vs = T.attrs[a * 4 + 2], ve = T.attrs[a * 4 + 3];
    let slot = -1;
    for (let k = 0; k < spec.attrs.length; k++) if (nameIs(b, as, ae, spec.attrs[k])) { slot = k; break; }
    if (slot < 0 || ve <= vs) return false;
    const kind = spec.kinds[slot];
    // (1e400 is a decimal but no double: ATAK's strtod refuses it, we would send Infinity)
    if (kind === DBL && !(isDecimal(b, vs, ve) && Number.isFinite(Number(latin1(b, vs, ve))))) return false;
    if (kind === U32) { const v = uint32Value(b, vs, ve); if (v < 0 || v > MAX_BATTERY) return false; }
    vals[slot * 2] = vs;
    vals[slot * 2 + 1] = ve;
  }
  // a receiver prints every attribute but the optional ones (proto3 cannot tell 0 or "" from
  // absent): an element maps only when it has all of them
  for (let k = 0; k < spec.attrs.length; k++) if ((spec.optional & (1 << k)) === 0 && vals[k * 2] < 0) return false;
  return true;
}

function writeTyped(b: Buffer, i: number): void {
  const spec = TYPED[i];
  const vals = tVal[i];
  const start = beginMessage(spec.field);
  for (let k = 0; k < spec.attrs.length; k++) {
    const vs = vals[k * 2], ve = vals[k * 2 + 1];
    if (vs < 0) continue;
    const kind = spec.kinds[k];
    if (kind === STR) writeAttr(k + 1, b, vs, ve);
    else if (kind === DBL) writeDouble(k + 1, Number(b.toString('latin1', vs, ve)));
    else writeUint(k + 1, uint32Value(b, vs, ve));
  }
  endMessage(start);
}

/** Encodes <detail> content [s, e) as field 15 of the CotEvent. */
function writeDetail(b: Buffer, s: number, e: number): void {
  tCount.fill(0);
  tOk.fill(0);
  // pass 1: find the typed candidates
  let p = s;
  while (p < e) {
    const q = b.indexOf(LT, p);
    if (q < 0 || q >= e) break;
    const c = b[q + 1];
    if (c === BANG || c === QM) { p = skipSpecial(b, q, e); continue; }
    if (c === SLASH) throw new TakProtoError('unexpected end tag in detail');
    const nameEnd = readStartTag(b, q + 1, e);
    const i = typedIndex(b, q + 1, nameEnd);
    // the first of its name: check its attributes now, before skipContent reuses the tag scratch
    const first = i >= 0 && tCount[i]++ === 0;
    if (first) tOk[i] = typedAttrsMap(b, i) ? 1 : 0;
    let end: number;
    if (T.self) {
      end = T.end;
    } else {
      const after = T.end;
      const close = skipContent(b, after, e);
      if (first && close !== after) tOk[i] = 0; // content: it does not map
      end = afterEndTag(b, close);
    }
    if (first) {
      tStart[i] = q;
      tEnd[i] = end;
    }
    p = end;
  }
  const detail = beginMessage(15);
  // xmlDetail: the content with the mapped elements cut out, in document order
  let mapped = 0;
  for (let i = 0; i < NT; i++) if (tCount[i] !== 1 || !tOk[i]) tOk[i] = 0; else mapped++;
  if (mapped === 0) {
    writeBytes(1, b, s, e);
  } else {
    const len0 = e - s;
    let cut = 0;
    for (let i = 0; i < NT; i++) if (tOk[i]) cut += tEnd[i] - tStart[i];
    const len = len0 - cut;
    if (len > 0) {
      tag(1, LEN);
      writeVarint(len);
      ensure(len);
      let from = s;
      for (;;) {
        // next mapped element after `from`
        let next = -1;
        for (let i = 0; i < NT; i++) if (tOk[i] && tStart[i] >= from && (next < 0 || tStart[i] < tStart[next])) next = i;
        const until = next < 0 ? e : tStart[next];
        b.copy(W.out, W.pos, from, until);
        W.pos += until - from;
        if (next < 0) break;
        from = tEnd[next];
      }
    }
    for (let i = 0; i < NT; i++) if (tOk[i]) writeTyped(b, i);
  }
  endMessage(detail);
}

/** Encodes one XML CoT frame as the body of a TakMessage at the scratch position. */
function encodeInto(b: Buffer): void {
  const n = b.length;
  // prolog: white space, <?xml …?>, comments
  let p = 0;
  for (;;) {
    while (p < n && isWs(b[p])) p++;
    if (p >= n || b[p] !== LT) throw new TakProtoError('no <event> element');
    if (b[p + 1] === QM || b[p + 1] === BANG) { p = skipSpecial(b, p, n); continue; }
    break;
  }
  const nameEnd = readStartTag(b, p + 1, n);
  if (!nameIs(b, p + 1, nameEnd, N_EVENT)) throw new TakProtoError('root element is not <event>');
  const ev = beginMessage(2);
  // event attributes, written in field order (an attribute given twice was refused by the scan)
  evAttr.fill(-1);
  for (let a = 0; a < T.n; a++) {
    const as = T.attrs[a * 4], ae = T.attrs[a * 4 + 1];
    for (let f = 1; f <= 9; f++) if (nameIs(b, as, ae, EVENT_ATTRS[f])) { evAttr[f] = a; break; }
  }
  for (let f = 1; f <= 9; f++) {
    const a = evAttr[f];
    if (a < 0) continue;
    if (f >= 6 && f <= 8) writeUint(f, timeMs(b, T.attrs[a * 4 + 2], T.attrs[a * 4 + 3]));
    else writeAttr(f, b, T.attrs[a * 4 + 2], T.attrs[a * 4 + 3]);
  }
  if (!T.self) {
    // children: the first <point> gives fields 10-14, the first <detail> field 15
    let seenPoint = false, seenDetail = false;
    let detailS = -1, detailE = -1;
    p = T.end;
    for (;;) {
      const q = b.indexOf(LT, p);
      if (q < 0) throw new TakProtoError('unclosed <event>');
      const c = b[q + 1];
      if (c === BANG || c === QM) { p = skipSpecial(b, q, n); continue; }
      if (c === SLASH) break; // </event>
      const ne = readStartTag(b, q + 1, n);
      const self = T.self;
      const after = T.end;
      if (!seenPoint && nameIs(b, q + 1, ne, N_POINT)) {
        seenPoint = true;
        readPoint(b);
        for (let k = 0; k < 5; k++) writeDouble(10 + k, pointVal[k]);
        p = self ? after : afterEndTag(b, skipContent(b, after, n));
      } else if (!seenDetail && nameIs(b, q + 1, ne, N_DETAIL)) {
        seenDetail = true;
        if (self) { detailS = detailE = after; p = after; }
        else { detailS = after; detailE = skipContent(b, after, n); p = afterEndTag(b, detailE); }
      } else {
        p = self ? after : afterEndTag(b, skipContent(b, after, n));
      }
    }
    if (!seenPoint) throw new Unconvertible('no <point>');
    if (seenDetail) writeDetail(b, detailS, detailE);
  } else {
    throw new Unconvertible('no <point>');
  }
  endMessage(ev);
}

/**
 * The five numbers of <point> into pointVal, or Unconvertible. TakMessage has a double for each,
 * always read (proto3: absent is 0), so what has no double must not become one: a missing or empty
 * lat/lon would put the event at 0,0 and "abc" at NaN, where ATAK's own XML parser (commo: strtod,
 * every byte consumed, not ±HUGE_VAL) refuses the event. A missing hae/ce/le is "unknown", which
 * CoT writes 9999999 (commo's COMMO_COT_POINT_NO_VALUE, its default for a point without them).
 */
function readPoint(b: Buffer): void {
  pointVal[0] = pointVal[1] = NaN;
  pointVal[2] = pointVal[3] = pointVal[4] = POINT_NO_VALUE;
  for (let a = 0; a < T.n; a++) {
    const as = T.attrs[a * 4], ae = T.attrs[a * 4 + 1];
    for (let k = 0; k < 5; k++) {
      if (!nameIs(b, as, ae, POINT_ATTRS[k])) continue;
      const v = pointNumber(b, T.attrs[a * 4 + 2], T.attrs[a * 4 + 3]);
      if (Number.isNaN(v)) throw new Unconvertible(`<point ${POINT_ATTRS[k].toString('latin1')}> is not a number`);
      pointVal[k] = v;
      break;
    }
  }
  if (Number.isNaN(pointVal[0]) || Number.isNaN(pointVal[1])) throw new Unconvertible('<point> without lat or lon');
}

/** A finite decimal number (white space around it allowed, as strtod and Number do), else NaN. */
function pointNumber(b: Buffer, s: number, e: number): number {
  if (!plainValue(b, s, e)) {
    const t = decodeAttr(b, s, e).trim();
    const tb = Buffer.from(t, 'latin1');
    return t.length > 0 && isDecimal(tb, 0, tb.length) ? finite(Number(t)) : NaN;
  }
  while (s < e && b[s] === 0x20) s++;
  while (e > s && b[e - 1] === 0x20) e--;
  return isDecimal(b, s, e) ? finite(Number(latin1(b, s, e))) : NaN;
}

function finite(v: number): number {
  return Number.isFinite(v) ? v : NaN;
}

/** XML CoT frame -> bare TakMessage bytes (a new Buffer). Throws TakProtoError on a frame it cannot read. */
export function encodeTakMessage(xml: Buffer): Buffer {
  W.pos = 0;
  encodeInto(xml);
  const msg = Buffer.from(W.out.subarray(0, W.pos));
  if (W.out.length > KEEP_OUT_MAX) W.out = Buffer.allocUnsafe(8192);
  return msg;
}

/**
 * XML CoT frame -> one streaming message: 0xBF, varint length, TakMessage, in one new Buffer.
 * Returns null when the result would not stay below 64 KiB (`max`). Throws TakProtoError on a frame
 * it cannot read.
 */
export function encodeStreamMessage(xml: Buffer, max = MAX_STREAM_MESSAGE): Buffer | null {
  W.pos = 0;
  encodeInto(xml);
  const len = W.pos;
  const hs = 1 + varintSize(len);
  const total = hs + len;
  let res: Buffer | null = null;
  if (total <= max) {
    res = Buffer.allocUnsafe(total);
    res[0] = TAK_MAGIC;
    let p = 1;
    let v = len;
    while (v >= 0x80) { res[p++] = (v & 0x7f) | 0x80; v >>>= 7; }
    res[p] = v;
    W.out.copy(res, hs, 0, W.pos);
  }
  if (W.out.length > KEEP_OUT_MAX) W.out = Buffer.allocUnsafe(8192);
  return res;
}

// ---- wire format: reading -----------------------------------------------------------------------

let rb: Buffer = Buffer.alloc(0);
let rp = 0;

function readVarint(end: number): number {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (rp >= end) throw new TakProtoError('truncated varint');
    const c = rb[rp++];
    v += (c & 0x7f) * mul;
    if (c < 0x80) return v;
    mul *= 0x80;
  }
  throw new TakProtoError('varint longer than 10 bytes');
}

/** Reads a length prefix; returns the end of the field's bytes. */
function readLen(end: number): number {
  const len = readVarint(end);
  if (len > end - rp) throw new TakProtoError('length beyond the message');
  return rp + len;
}

function skipField(wire: number, end: number): void {
  switch (wire) {
    case VARINT: readVarint(end); return;
    case I64: rp += 8; break;
    case LEN: rp = readLen(end); return;
    case I32: rp += 4; break;
    default: throw new TakProtoError(`unsupported wire type ${wire}`);
  }
  if (rp > end) throw new TakProtoError('truncated field');
}

function readDouble(end: number): number {
  if (rp + 8 > end) throw new TakProtoError('truncated double');
  const v = rb.readDoubleLE(rp);
  rp += 8;
  return v;
}

function readString(end: number): string {
  const e = readLen(end);
  const s = rb.toString('utf8', rp, e);
  rp = e;
  return s;
}

/** Reads the key of the next field: field number * 8 + wire type. */
function readKey(end: number): number {
  const k = readVarint(end);
  if (k > 0xffffffff || k < 8) throw new TakProtoError('bad field key');
  return k;
}

function expect(wire: number, got: number): void {
  if (wire !== got) throw new TakProtoError(`wire type ${got} where ${wire} was expected`);
}

/** Number as CoT writes it: integers keep a ".0" (9999999.0), others the shortest exact form. */
export function formatDouble(v: number): string {
  if (Number.isInteger(v) && Math.abs(v) < 1e21) return `${v === 0 ? 0 : v}.0`;
  return String(v);
}

const MAX_TIME = 8.64e15; // Date's range

// time and start are usually the same instant, and the stale of many events the same too
let lastMs = -1;
let lastIso = '';

function isoTime(ms: number): string {
  if (ms === lastMs) return lastIso;
  if (ms > MAX_TIME) throw new TakProtoError('time out of range');
  lastMs = ms;
  return (lastIso = ms < MAX_FAST ? formatIso(ms) : new Date(ms).toISOString());
}

const MAX_FAST = 253402300800000; // 10000-01-01: four-digit years
const pad2 = (n: number) => (n < 10 ? '0' : '') + n;

/** Date.prototype.toISOString for years 1970-9999, without a Date (H. Hinnant's civil_from_days). */
function formatIso(ms: number): string {
  const days = Math.floor(ms / 86400000);
  let rest = ms - days * 86400000;
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  const h = Math.floor(rest / 3600000); rest -= h * 3600000;
  const mi = Math.floor(rest / 60000); rest -= mi * 60000;
  const sec = Math.floor(rest / 1000);
  const milli = rest - sec * 1000;
  return `${y}-${pad2(m)}-${pad2(d)}T${pad2(h)}:${pad2(mi)}:${pad2(sec)}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

// Decoded typed detail: [field] -> attribute text (' name="…"' …) or null when absent
const typedXml: (string | null)[] = new Array(8).fill(null);

function readTyped(field: number, end: number): string {
  const spec = TYPED[field - 2];
  const e = readLen(end);
  const vals: (string | undefined)[] = [];
  while (rp < e) {
    const k = readKey(e);
    const f = k >>> 3, w = k & 7;
    const slot = f - 1;
    if (slot >= 0 && slot < spec.attrs.length) {
      const kind = spec.kinds[slot];
      if (kind === STR) { expect(LEN, w); vals[slot] = escapeAttr(readString(e)); continue; }
      if (kind === DBL) { expect(I64, w); vals[slot] = formatDouble(readDouble(e)); continue; }
      expect(VARINT, w);
      vals[slot] = String(Math.min(readVarint(e) % 0x100000000, MAX_BATTERY)); // clamped, as ATAK does
      continue;
    }
    skipField(w, e);
  }
  rp = e;
  // as ATAK writes it back: every attribute but an empty optional one (contact's endpoint)
  for (let k = 0; k < spec.attrs.length; k++) {
    if (vals[k] === undefined) vals[k] = spec.kinds[k] === STR ? '' : spec.kinds[k] === DBL ? '0.0' : '0';
  }
  let s = '<' + spec.tag;
  for (let k = 0; k < spec.attrs.length; k++) {
    const v = vals[k];
    if (v !== '' || (spec.optional & (1 << k)) === 0) s += spec.prefix[k] + v + '"';
  }
  return s + '/>';
}

/** Top-level element names of an XML fragment that are typed-detail names (bit i = TYPED[i]). */
function topLevelTyped(b: Buffer, s: number, e: number): number {
  let found = 0;
  let depth = 0;
  let p = s;
  while (p < e) {
    const q = b.indexOf(LT, p);
    if (q < 0 || q + 1 >= e) break;
    const c = b[q + 1];
    if (c === SLASH) { depth--; const g = b.indexOf(GT, q); if (g < 0 || g >= e) break; p = g + 1; continue; }
    if (c === BANG || c === QM) {
      try { p = skipSpecial(b, q, e); } catch { break; }
      continue;
    }
    let ne: number;
    try { ne = readStartTag(b, q + 1, e); } catch { break; }
    if (depth === 0) {
      const i = typedIndex(b, q + 1, ne);
      if (i >= 0) found |= 1 << i;
    }
    if (!T.self) depth++;
    p = T.end;
  }
  return found;
}

/**
 * Bare TakMessage -> XML CoT frame (a new Buffer), or null when the message carries no CotEvent
 * (a TakControl-only message: nothing to route). Throws TakProtoError on malformed input.
 */
export function decodeTakMessage(msg: Buffer): Buffer | null {
  rb = msg;
  rp = 0;
  const end = msg.length;
  let evS = -1, evE = -1;
  while (rp < end) {
    const k = readKey(end);
    const f = k >>> 3, w = k & 7;
    if (f === 2) { expect(LEN, w); const e = readLen(end); evS = rp; evE = e; rp = e; continue; }
    skipField(w, end);
  }
  if (evS < 0) { rb = EMPTY; return null; }
  try {
    return decodeEvent(evS, evE);
  } finally {
    rb = EMPTY;
  }
}
const EMPTY = Buffer.alloc(0);

// Whether the point of the last decoded message was all finite numbers. One that is not (NaN,
// ±Infinity) decodes to XML that no protobuf encoding may come from (Unconvertible): such a
// message must not be forwarded as it came either, or protobuf clients on the sender's node would
// get what those on every other node are refused.
let pointFinite = true;

/** After decodeTakMessage: the decoded point's lat, lon, hae, ce and le were all finite. */
export function decodedPointFinite(): boolean {
  return pointFinite;
}

function decodeEvent(s: number, end: number): Buffer {
  rp = s;
  let type = '', access = '', qos = '', opex = '', uid = '', how = '';
  let sendTime = 0, startTime = 0, staleTime = 0;
  let lat = 0, lon = 0, hae = 0, ce = 0, le = 0;
  let hasDetail = false;
  let xmlS = 0, xmlE = 0;
  for (let i = 2; i < 8; i++) typedXml[i] = null;
  while (rp < end) {
    const k = readKey(end);
    const f = k >>> 3, w = k & 7;
    switch (f) {
      case 1: expect(LEN, w); type = readString(end); break;
      case 2: expect(LEN, w); access = readString(end); break;
      case 3: expect(LEN, w); qos = readString(end); break;
      case 4: expect(LEN, w); opex = readString(end); break;
      case 5: expect(LEN, w); uid = readString(end); break;
      case 6: expect(VARINT, w); sendTime = readVarint(end); break;
      case 7: expect(VARINT, w); startTime = readVarint(end); break;
      case 8: expect(VARINT, w); staleTime = readVarint(end); break;
      case 9: expect(LEN, w); how = readString(end); break;
      case 10: expect(I64, w); lat = readDouble(end); break;
      case 11: expect(I64, w); lon = readDouble(end); break;
      case 12: expect(I64, w); hae = readDouble(end); break;
      case 13: expect(I64, w); ce = readDouble(end); break;
      case 14: expect(I64, w); le = readDouble(end); break;
      case 15: {
        expect(LEN, w);
        hasDetail = true;
        const de = readLen(end);
        while (rp < de) {
          const dk = readKey(de);
          const df = dk >>> 3, dw = dk & 7;
          if (df === 1) { expect(LEN, dw); const xe = readLen(de); xmlS = rp; xmlE = xe; rp = xe; }
          else if (df >= 2 && df <= 7) { expect(LEN, dw); typedXml[df] = readTyped(df, de); }
          else skipField(dw, de);
        }
        rp = de;
        break;
      }
      default: skipField(w, end);
    }
  }
  pointFinite = Number.isFinite(lat) && Number.isFinite(lon) && Number.isFinite(hae) && Number.isFinite(ce) && Number.isFinite(le);
  let head = `<event version="2.0" uid="${escapeAttr(uid)}" type="${escapeAttr(type)}"`;
  if (access) head += ` access="${escapeAttr(access)}"`;
  if (qos) head += ` qos="${escapeAttr(qos)}"`;
  if (opex) head += ` opex="${escapeAttr(opex)}"`;
  // always, as ATAK does: its XML reader (commo) refuses an event without how, how="" it takes
  head += ` how="${escapeAttr(how)}"`;
  if (sendTime) head += ` time="${isoTime(sendTime)}"`;
  if (startTime) head += ` start="${isoTime(startTime)}"`;
  if (staleTime) head += ` stale="${isoTime(staleTime)}"`;
  head += `><point lat="${formatDouble(lat)}" lon="${formatDouble(lon)}" hae="${formatDouble(hae)}" ce="${formatDouble(ce)}" le="${formatDouble(le)}"/>`;
  if (!hasDetail) return Buffer.from(head + '</event>', 'utf8');
  head += '<detail>';
  let clash = -1;
  for (let i = 2; i < 8; i++) {
    if (typedXml[i] === null) continue;
    if (clash < 0) clash = xmlE > xmlS ? topLevelTyped(rb, xmlS, xmlE) : 0;
    if ((clash & (1 << (i - 2))) === 0) head += typedXml[i];
  }
  const tail = '</detail></event>';
  const hl = Buffer.byteLength(head, 'utf8');
  const res = Buffer.allocUnsafe(hl + (xmlE - xmlS) + tail.length);
  res.write(head, 0, 'utf8');
  rb.copy(res, hl, xmlS, xmlE);
  res.write(tail, hl + xmlE - xmlS, 'latin1');
  return res;
}
