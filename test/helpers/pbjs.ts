// An independent TAK Protocol v1 codec for tests: protobufjs with the upstream TAK .proto files that
// @tak-ps/node-cot ships (not ours, not our hand-rolled wire code).
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { escapeAttr } from '../../protocol/xml.ts';

export const upstream = protobuf.loadSync(fileURLToPath(new URL('../../node_modules/@tak-ps/node-cot/dist/lib/proto/takmessage.proto', import.meta.url)))
  .lookupType('atakmap.commoncommo.protobuf.v1.TakMessage');
/** our published schemas in protocol/proto */
export const ours = protobuf.loadSync(fileURLToPath(new URL('../../protocol/proto/takmessage.proto', import.meta.url)))
  .lookupType('atakmap.commoncommo.protobuf.v1.TakMessage');

type Obj = Record<string, unknown>;
/** Detail field -> XML element name */
export const TYPED: Record<string, string> = {
  contact: 'contact', group: '__group', precisionLocation: 'precisionlocation', status: 'status', takv: 'takv', track: 'track',
};

/** TakMessage -> XML built on protobufjs' decoding (wrap xmlDetail, add the typed fields). */
export function pbjsToXml(bytes: Uint8Array, type = upstream): string {
  const m = type.toObject(type.decode(bytes), { longs: Number, defaults: false }) as Obj;
  const e = m.cotEvent as Obj;
  const t = (ms: unknown) => (ms ? new Date(ms as number).toISOString() : undefined);
  const attrs: Array<[string, unknown]> = [['uid', e.uid ?? ''], ['type', e.type ?? ''], ['access', e.access], ['qos', e.qos], ['opex', e.opex],
    ['how', e.how], ['time', t(e.sendTime)], ['start', t(e.startTime)], ['stale', t(e.staleTime)]];
  let x = '<event' + attrs.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => ` ${k}="${escapeAttr(String(v))}"`).join('') + '>';
  x += `<point lat="${e.lat ?? 0}" lon="${e.lon ?? 0}" hae="${e.hae ?? 0}" ce="${e.ce ?? 0}" le="${e.le ?? 0}"/>`;
  const d = e.detail as Obj | undefined;
  if (d) {
    x += '<detail>';
    for (const [field, name] of Object.entries(TYPED)) {
      const v = d[field] as Obj | undefined;
      if (!v) continue;
      const all = { ...v };
      if (field === 'track') { all.speed ??= 0; all.course ??= 0; }
      if (field === 'status') all.battery ??= 0;
      x += `<${name}` + Object.entries(all).map(([k, val]) => ` ${k}="${escapeAttr(String(val))}"`).join('') + '/>';
    }
    x += (d.xmlDetail as string | undefined) ?? '';
    x += '</detail>';
  }
  return x + '</event>';
}

/** 0xBF + varint length + message */
export function streamFrame(msg: Uint8Array): Buffer {
  const h = [0xbf];
  let v = msg.length;
  while (v >= 0x80) { h.push((v & 0x7f) | 0x80); v >>>= 7; }
  h.push(v);
  return Buffer.concat([Buffer.from(h), msg]);
}

/** Typed Detail fields as ATAK writes them back (commo's CoTMessage::reinitFromProtobuf): every
 *  attribute, empty strings included, except contact's endpoint when empty; battery clamped to a C int. */
const ATAK_ATTRS: Record<string, string[]> = {
  contact: ['endpoint', 'callsign'], group: ['name', 'role'], precisionLocation: ['geopointsrc', 'altsrc'],
  status: ['battery'], takv: ['device', 'platform', 'os', 'version'], track: ['speed', 'course'],
};

/**
 * TakMessage -> XML the way an ATAK device turns a received message back into CoT (the reference
 * for what a protobuf recipient sees): protobufjs decodes, then commo's rules — the xmlDetail
 * elements first, a typed field appended only when xmlDetail has no element of its name, each
 * typed element with all its attributes (see ATAK_ATTRS).
 */
export function atakToXml(bytes: Uint8Array, type = upstream): string {
  const m = type.toObject(type.decode(bytes), { longs: Number, defaults: true }) as Obj;
  const e = m.cotEvent as Obj;
  const t = (ms: unknown) => new Date(ms as number).toISOString();
  let x = `<event version="2.0" uid="${escapeAttr(e.uid as string)}" type="${escapeAttr(e.type as string)}"`;
  for (const k of ['access', 'qos', 'opex']) if (e[k]) x += ` ${k}="${escapeAttr(e[k] as string)}"`;
  x += ` time="${t(e.sendTime)}" start="${t(e.startTime)}" stale="${t(e.staleTime)}" how="${escapeAttr(e.how as string)}">`;
  x += `<point lat="${e.lat}" lon="${e.lon}" hae="${e.hae}" ce="${e.ce}" le="${e.le}"/>`;
  const d = e.detail as Obj | null;
  if (d) {
    const xd = (d.xmlDetail as string) ?? '';
    x += '<detail>' + xd;
    for (const [field, name] of Object.entries(TYPED)) {
      const v = d[field] as Obj | null;
      if (!v || new RegExp(`<${name}[\\s/>]`).test(xd)) continue;
      x += `<${name}`;
      for (const a of ATAK_ATTRS[field]) {
        let val = v[a] as string | number;
        if (field === 'contact' && a === 'endpoint' && val === '') continue;
        if (field === 'status') val = Math.min(val as number, 0x7fffffff);
        x += ` ${a}="${escapeAttr(String(val))}"`;
      }
      x += '/>';
    }
    x += '</detail>';
  }
  return x + '</event>';
}
