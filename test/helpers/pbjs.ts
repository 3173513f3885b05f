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
