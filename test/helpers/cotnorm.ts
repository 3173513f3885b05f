// Compare CoT events by meaning, not bytes: fast-xml-parser (an independent XML parser) reads both
// sides, and the differences TAK Protocol v1 makes on purpose are normalised away — times compared
// as epoch milliseconds, numbers of <point> and <track> as numbers, <event version> dropped, and
// the order of different elements inside <detail> ignored (same-name elements keep their order).
import { XMLParser } from 'fast-xml-parser';

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  // character references are meaning too: &#xE9; and é are the same attribute value
  htmlEntities: true,
});

type Obj = Record<string, unknown>;

function timeMs(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? v : ms;
}

function numbers(o: unknown, keys: string[]): unknown {
  if (o === null || typeof o !== 'object') return o;
  if (Array.isArray(o)) return o.map((x) => numbers(x, keys));
  const r: Obj = { ...(o as Obj) };
  for (const k of keys) if (typeof r[k] === 'string') r[k] = Number(r[k]);
  return r;
}

export interface NormOptions {
  /** detail children to drop before comparing (e.g. a third-party codec's own additions) */
  dropDetail?: string[];
  /** drop empty access/qos/opex attributes (node-cot writes them empty) */
  dropEmptyOptional?: boolean;
  /** a missing <detail> counts as an empty one (node-cot always writes one) */
  detailAlways?: boolean;
}

/** The meaning of one CoT event, ready for assert.deepEqual. */
export function normCot(xml: string | Buffer, opts: NormOptions = {}): Obj {
  const doc = parser.parse(typeof xml === 'string' ? xml : xml.toString('utf8')) as Obj;
  const ev = { ...(doc.event as Obj) };
  delete ev['@_version'];
  for (const k of ['@_time', '@_start', '@_stale']) if (k in ev) ev[k] = timeMs(ev[k]);
  if (opts.dropEmptyOptional) for (const k of ['@_access', '@_qos', '@_opex']) if (ev[k] === '') delete ev[k];
  if (ev.point !== undefined) {
    const p = Array.isArray(ev.point) ? ev.point[0] : ev.point;
    ev.point = numbers(p, ['@_lat', '@_lon', '@_hae', '@_ce', '@_le']);
  }
  if (ev.detail === undefined && opts.detailAlways) ev.detail = {};
  if (ev.detail !== undefined) {
    let d = ev.detail;
    if (d === '') d = {};
    const det = { ...(d as Obj) };
    if (det.track !== undefined) det.track = numbers(det.track, ['@_speed', '@_course']);
    for (const k of opts.dropDetail ?? []) delete det[k];
    ev.detail = det;
  }
  return ev;
}
