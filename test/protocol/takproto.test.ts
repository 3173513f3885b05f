import assert from 'node:assert/strict';
import fc from 'fast-check';
import CoT from '@tak-ps/node-cot';
import {
  decodeTakMessage, encodeStreamMessage, encodeTakMessage, formatDouble, MAX_STREAM_MESSAGE, TAK_MAGIC, TakProtoError, Unconvertible,
} from '../../protocol/takproto.ts';
import { scan } from '../../protocol/scan.ts';
import { escapeAttr } from '../../protocol/xml.ts';
import { loadSamples } from '../helpers/samples.ts';
import { normCot } from '../helpers/cotnorm.ts';
import { atakToXml, ours, pbjsToXml, TYPED, upstream } from '../helpers/pbjs.ts';

// Two independent protobuf codecs in ../helpers/pbjs.ts: protobufjs with the upstream TAK .proto
// files that node-cot ships, and with our protocol/proto files (checks the schemas we publish).
// The spec samples carry the literal placeholder TIME; give them a real time.
const samples = [...loadSamples()].map(([name, b]) => [name, b.toString('utf8').replaceAll("'TIME'", "'2024-05-06T07:08:09.123Z'")] as const);

function roundTrip(xml: string): Buffer {
  const back = decodeTakMessage(encodeTakMessage(Buffer.from(xml)));
  assert.ok(back, 'a CotEvent comes back');
  return back;
}

type Obj = Record<string, unknown>;

describe('takproto: XML <-> TakMessage', () => {
  describe('every sample in protocol/samples', () => {
    for (const [name, xml] of samples) {
      it(`${name}: round trip keeps every field and detail element`, () => {
        const back = roundTrip(xml);
        assert.ok(scan(back).ok, 'the decoded XML passes the scan');
        assert.deepEqual(normCot(back), normCot(xml));
      });

      it(`${name}: protobufjs (upstream and our .proto files) reads our encoding the same way`, () => {
        const bytes = encodeTakMessage(Buffer.from(xml));
        assert.deepEqual(normCot(pbjsToXml(bytes, upstream)), normCot(xml));
        assert.deepEqual(normCot(pbjsToXml(bytes, ours)), normCot(xml));
        // and we read protobufjs' own encoding of that message
        const again = upstream.encode(upstream.decode(bytes)).finish();
        assert.deepEqual(normCot(decodeTakMessage(Buffer.from(again))!), normCot(xml));
      });

      it(`${name}: an ATAK receiving our encoding rebuilds the same event (commo's decoding rules)`, () => {
        // commo writes every attribute of a typed element back, "" for one the XML did not have:
        // sample 07's <precisionlocation altsrc='???'/> came back with geopointsrc="" added
        if (/type=["']t-x-takp-/.test(xml)) return; // TakControl: never sent as protobuf
        assert.deepEqual(normCot(atakToXml(encodeTakMessage(Buffer.from(xml)))), normCot(xml));
      });

      it(`${name}: agrees with @tak-ps/node-cot both ways`, () => {
        // node-cot's from_proto on our bytes. Its known quirks are normalised away: it drops the
        // precisionLocation field (looks for "precisionlocation"), writes empty access/qos/opex and
        // adds its own _flow-tags_.
        const ours1 = encodeTakMessage(Buffer.from(xml));
        const viaCot = CoT.from_proto(ours1).to_xml();
        const opts = { dropDetail: ['precisionlocation', '_flow-tags_', 'metadata'], dropEmptyOptional: true, detailAlways: true };
        assert.deepEqual(normCot(viaCot, opts), normCot(xml, opts));
        // node-cot's to_proto (a different mapping: it keeps __group in xmlDetail, maps contact
        // whatever its attributes) decoded by us and by node-cot itself
        const theirs = new CoT(xml).to_proto();
        assert.equal(theirs[0] === TAK_MAGIC && theirs.length > 2 && theirs[1] === theirs.length - 2, false, 'node-cot to_proto is a bare TakMessage');
        const mine = decodeTakMessage(Buffer.from(theirs))!;
        assert.ok(scan(mine).ok);
        assert.deepEqual(normCot(mine, opts), normCot(CoT.from_proto(theirs).to_xml(), opts));
      });
    }
  });

  describe('detail mapping rule', () => {
    const ev = (detail: string) => `<event version="2.0" uid="u1" type="a-f-G" how="m-g" time="2024-01-01T00:00:00.000Z" start="2024-01-01T00:00:00.000Z" stale="2024-01-01T00:01:00.000Z"><point lat="1.5" lon="2.5" hae="3.0" ce="4.0" le="5.0"/><detail>${detail}</detail></event>`;
    const fields = (detail: string) => {
      const m = upstream.toObject(upstream.decode(encodeTakMessage(Buffer.from(ev(detail)))), { longs: Number }) as Obj;
      return (m.cotEvent as Obj).detail as Obj;
    };

    it('moves whole elements into typed fields and keeps the rest in xmlDetail', () => {
      const d = fields('<contact endpoint="*:-1:stcp" callsign="A"/><__group name="Cyan" role="Team Member"/><precisionlocation geopointsrc="GPS" altsrc="DTED0"/><status battery="88"/><takv device="d" platform="p" os="o" version="v"/><track speed="1.5" course="90.0"/><uid Droid="A"/>');
      assert.deepEqual(d.contact, { endpoint: '*:-1:stcp', callsign: 'A' });
      assert.deepEqual(d.group, { name: 'Cyan', role: 'Team Member' });
      assert.deepEqual(d.precisionLocation, { geopointsrc: 'GPS', altsrc: 'DTED0' });
      assert.deepEqual(d.status, { battery: 88 });
      assert.deepEqual(d.takv, { device: 'd', platform: 'p', os: 'o', version: 'v' });
      assert.deepEqual(d.track, { speed: 1.5, course: 90 });
      assert.equal(d.xmlDetail, '<uid Droid="A"/>');
    });

    it('keeps in xmlDetail what does not map whole', () => {
      const cases = [
        '<contact callsign="A" phone="123"/>', // an attribute without a field
        '<contact callsign="A"><x/></contact>', // a child
        '<contact callsign="A">text</contact>', // text
        '<contact callsign="A"/><contact callsign="B"/>', // twice
        '<contact callsign=""/>', // empty: proto3 cannot carry it
        '<status battery="07"/>', // not canonical
        '<status battery="-1"/>',
        '<status readiness="true"/>',
        '<track speed="NaN" course="1"/>',
        '<track course="1.0"/>', // a receiver would print speed="0.0"
      ];
      for (const c of cases) {
        const d = fields(c);
        assert.equal(d.xmlDetail, c, c);
        for (const f of Object.keys(TYPED)) assert.equal(d[f], undefined, `${c}: ${f}`);
        assert.deepEqual(normCot(roundTrip(ev(c))), normCot(ev(c)), c);
      }
    });

    it('maps only what ATAK would map and rebuild unchanged: every attribute (contact endpoint aside), a C-int battery, finite numbers', () => {
      const cases = [
        '<__group name="Cyan"/>', // ATAK would rebuild it with role=""
        '<__group role="Team Member"/>',
        '<precisionlocation altsrc="???"/>',
        '<takv platform="ATAK-CIV" version="4.10"/>',
        '<takv device="d" platform="p" os="o"/>',
        '<status battery="2147483648"/>', // ATAK clamps to 2147483647
        '<status battery="4294967295"/>',
        '<track speed="1e400" course="0"/>', // no double: ATAK's strtod refuses it
        '<track speed="1" course="-1e309"/>',
      ];
      for (const c of cases) {
        const d = fields(c);
        assert.equal(d.xmlDetail, c, c);
        for (const f of Object.keys(TYPED)) assert.equal(d[f], undefined, `${c}: ${f}`);
        assert.deepEqual(normCot(atakToXml(encodeTakMessage(Buffer.from(ev(c))))), normCot(ev(c)), c);
      }
      // still mapped: a contact without endpoint (ATAK writes none back), the largest battery
      assert.deepEqual(fields('<contact callsign="A"/>').contact, { callsign: 'A' });
      assert.deepEqual(fields('<status battery="2147483647"/>').status, { battery: 2147483647 });
    });

    it('decodes a typed field as ATAK does: every attribute, "" included, contact endpoint only when set, battery clamped', () => {
      const msg = upstream.encode(upstream.fromObject({
        cotEvent: { uid: 'u', type: 't', detail: { group: { name: 'Cyan' }, takv: { platform: 'P' }, contact: { callsign: 'C' }, precisionLocation: { altsrc: 'GPS' }, status: { battery: 4000000000 } } },
      })).finish();
      const xml = decodeTakMessage(Buffer.from(msg))!.toString();
      assert.ok(xml.includes('<__group name="Cyan" role=""/>'), xml);
      assert.ok(xml.includes('<takv device="" platform="P" os="" version=""/>'), xml);
      assert.ok(xml.includes('<contact callsign="C"/>'), xml);
      assert.ok(xml.includes('<precisionlocation geopointsrc="" altsrc="GPS"/>'), xml);
      assert.ok(xml.includes('<status battery="2147483647"/>'), xml);
      assert.deepEqual(normCot(xml).detail, normCot(atakToXml(msg)).detail);
    });

    it('<x></x> maps like <x/>; comments and text between elements stay in xmlDetail', () => {
      const d = fields('<!-- a --><contact callsign="A"></contact> <remarks>hi &amp; bye</remarks>');
      assert.deepEqual(d.contact, { callsign: 'A' });
      assert.equal(d.xmlDetail, '<!-- a --> <remarks>hi &amp; bye</remarks>');
    });

    it('on decode, an element in xmlDetail wins over the typed field of the same name', () => {
      const msg = upstream.encode(upstream.fromObject({
        cotEvent: { uid: 'u', type: 't', detail: { xmlDetail: '<contact callsign="fromXml"/><x><track speed="9" course="9"/></x>', contact: { callsign: 'typed' }, track: { speed: 1, course: 2 } } },
      })).finish();
      const xml = decodeTakMessage(Buffer.from(msg))!.toString();
      assert.ok(xml.includes('<contact callsign="fromXml"/>'));
      assert.ok(!xml.includes('typed'));
      // a nested <track> is no clash: the typed one is added
      assert.ok(xml.includes('<track speed="1.0" course="2.0"/>'), xml);
    });

    it('attribute values with references survive both as typed fields and in xmlDetail', () => {
      const x = ev('<contact callsign="A &amp; B &lt;&#10;&gt;" endpoint="e"/><remarks a="&quot;">&lt;hi&gt;</remarks>');
      const d = fields('<contact callsign="A &amp; B &lt;&#10;&gt;" endpoint="e"/>');
      assert.equal((d.contact as Obj).callsign, 'A & B <\n>');
      const back = roundTrip(x);
      assert.ok(scan(back).ok);
      assert.deepEqual(normCot(back), normCot(x));
    });
  });

  describe('<point>', () => {
    const ev = (point: string) => `<event version="2.0" uid="u1" type="a-f-G" how="m-g" time="2024-01-01T00:00:00.000Z" start="2024-01-01T00:00:00.000Z" stale="2024-01-01T00:01:00.000Z">${point}<detail/></event>`;

    it('a point whose lat/lon is missing, empty or not a finite number, or no point at all, is Unconvertible (not 0,0 or NaN)', () => {
      const bad = [
        '', '<point lon="2" hae="0" ce="0" le="0"/>', '<point lat="1" hae="0" ce="0" le="0"/>', '<point lat="" lon="2"/>',
        '<point lat="abc" lon="2"/>', '<point lat="NaN" lon="2"/>', '<point lat="0x10" lon="2"/>', '<point lat="1e400" lon="2"/>',
        '<point lat="1" lon="2" hae="Infinity"/>', '<point lat="1" lon="2" ce=""/>', '<point lat="1" lon="2" le="1,5"/>',
      ];
      for (const p of bad) {
        assert.ok(scan(Buffer.from(ev(p))).ok, `the scan accepts ${p}`);
        assert.throws(() => encodeTakMessage(Buffer.from(ev(p))), (e: unknown) => e instanceof Unconvertible, p);
        assert.throws(() => encodeStreamMessage(Buffer.from(ev(p))), (e: unknown) => e instanceof Unconvertible, p);
      }
    });

    it('missing hae/ce/le are "unknown" (9999999, as commo fills them); numbers with white space or references are read', () => {
      const back = normCot(roundTrip(ev('<point lat="1.5" lon="-2.5"/>')));
      assert.deepEqual(back.point, { '@_lat': 1.5, '@_lon': -2.5, '@_hae': 9999999, '@_ce': 9999999, '@_le': 9999999 });
      const ws = normCot(roundTrip(ev('<point lat=" 1.5 " lon="&#32;-2.5&#9;" hae="+1e2" ce=".5" le="-0"/>')));
      assert.deepEqual(ws.point, { '@_lat': 1.5, '@_lon': -2.5, '@_hae': 100, '@_ce': 0.5, '@_le': 0 });
    });
  });

  describe('generated events', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 12 });
    const nonEmpty = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 });
    const num = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: -1e6, max: 1e6 }).map((n) => n / 1000));
    const attrList = (names: string[], value: fc.Arbitrary<string>) =>
      fc.subarray(names).chain((ns) => fc.tuple(...ns.map((n) => value.map((v) => ` ${n}="${escapeAttr(v)}"`))).map((a) => a.join('')));
    const typedEl = fc.oneof(
      attrList(['endpoint', 'callsign'], text).map((a) => `<contact${a}/>`),
      attrList(['name', 'role'], text).map((a) => `<__group${a}/>`),
      attrList(['geopointsrc', 'altsrc'], text).map((a) => `<precisionlocation${a}/>`),
      fc.oneof(fc.nat({ max: 0xffffffff }).map(String), text).map((v) => `<status battery="${escapeAttr(v)}"/>`),
      attrList(['device', 'platform', 'os', 'version', 'extra'], text).map((a) => `<takv${a}/>`),
      fc.tuple(num, num, fc.boolean()).map(([s, c, fmt]) => `<track speed="${fmt ? formatDouble(s) : String(s)}" course="${String(c)}"/>`),
      fc.tuple(nonEmpty, text).map(([c, t]) => `<contact callsign="${escapeAttr(c)}">${escapeAttr(t)}x</contact>`),
    );
    const otherEl = fc.oneof(
      fc.tuple(text, text).map(([a, t]) => `<remarks source="${escapeAttr(a)}">${escapeAttr(t)}</remarks>`),
      fc.constant('<link uid="x" relation="p-p" type="a-f-G"/>'),
      fc.constant('<__chat chatroom="r"><chatgrp uid0="a"/><contact callsign="nested"/></__chat>'),
      fc.constant('<!-- comment --><archive/>'),
      fc.constant('<remarks><![CDATA[<b>raw</b>]]></remarks>'),
    );
    const time = fc.integer({ min: 1, max: 4102444800000 }).map((ms) => new Date(ms).toISOString());
    const event = fc.record({
      uid: nonEmpty, type: nonEmpty, how: text, access: fc.option(nonEmpty), qos: fc.option(nonEmpty), opex: fc.option(nonEmpty),
      time, start: time, stale: time, lat: num, lon: num, hae: num, ce: num, le: num,
      detail: fc.option(fc.array(fc.oneof(typedEl, otherEl), { maxLength: 8 }).map((a) => a.join(''))),
    }).map((e) => {
      const opt = (k: string, v: string | null) => (v === null ? '' : ` ${k}="${escapeAttr(v)}"`);
      return `<event version="2.0" uid="${escapeAttr(e.uid)}" type="${escapeAttr(e.type)}"${e.how ? ` how="${escapeAttr(e.how)}"` : ''}${opt('access', e.access)}${opt('qos', e.qos)}${opt('opex', e.opex)} time="${e.time}" start="${e.start}" stale="${e.stale}">` +
        `<point lat="${e.lat}" lon="${e.lon}" hae="${e.hae}" ce="${e.ce}" le="${e.le}"/>${e.detail === null ? '' : `<detail>${e.detail}</detail>`}</event>`;
    });

    it('XML -> TakMessage -> XML keeps every field and detail element', () => {
      fc.assert(fc.property(event, (xml) => {
        assert.ok(scan(Buffer.from(xml)).ok, xml);
        const back = roundTrip(xml);
        assert.ok(scan(back).ok);
        // TakMessage cannot tell a missing how from how="": it comes back how="" (as from ATAK)
        assert.deepEqual(normCot(back), { '@_how': '', ...normCot(xml) });
      }), { numRuns: 300 });
    });

    it('protobufjs (upstream schema) reads every generated encoding the same way', () => {
      fc.assert(fc.property(event, (xml) => {
        const bytes = encodeTakMessage(Buffer.from(xml));
        assert.deepEqual(normCot(pbjsToXml(bytes)), normCot(xml));
      }), { numRuns: 200 });
    });
  });

  it('how is always written back, as ATAK does (its XML reader refuses an event without how)', () => {
    const msg = upstream.encode(upstream.fromObject({ cotEvent: { uid: 'u', type: 'a-f-G', sendTime: 1, startTime: 1, staleTime: 2 } })).finish();
    assert.match(decodeTakMessage(Buffer.from(msg))!.toString(), /^<event version="2.0" uid="u" type="a-f-G" how="" time=/);
    assert.equal(normCot(decodeTakMessage(Buffer.from(msg))!)['@_how'], normCot(atakToXml(msg))['@_how']);
  });

  describe('times', () => {
    it('every form of CoT time becomes the milliseconds Date.parse gives (sub-ms cut), ISO with ms on the way back', () => {
      for (const t of ['2020-08-19T08:01:32.157Z', '2020-08-19T08:01:32Z', '2020-08-19T08:01:32.1Z', '2020-08-19T08:01:32.123456789Z',
        '2020-02-29T23:59:59.999Z', '2021-02-30T00:00:00Z', '2020-08-19T10:01:32.157+02:00', '2020-08-19 08:01:32Z', 'TIME', '1969-12-31T23:59:59Z']) {
        const x = `<event version="2.0" uid="u" type="t" time="${t}" start="${t}" stale="${t}"><point lat="0" lon="0" hae="0" ce="0" le="0"/></event>`;
        const m = upstream.toObject(upstream.decode(encodeTakMessage(Buffer.from(x))), { longs: Number }) as Obj;
        const ms = Date.parse(t);
        const want = ms > 0 ? ms : undefined;
        assert.equal((m.cotEvent as Obj).sendTime, want, t);
        const back = decodeTakMessage(encodeTakMessage(Buffer.from(x)))!.toString();
        if (want !== undefined) assert.ok(back.includes(`time="${new Date(want).toISOString()}"`), back);
        else assert.ok(!back.includes('time='), back);
      }
    });
  });

  it('times print exactly as Date.prototype.toISOString (from 1970 to 9999 and beyond)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 8.64e15 }), (ms) => {
      const x = `<event uid="u" type="t" time="${new Date(ms).toISOString()}"><point lat="0" lon="0"/></event>`;
      const back = decodeTakMessage(encodeTakMessage(Buffer.from(x)))!.toString();
      assert.ok(back.includes(`time="${new Date(ms).toISOString()}"`), `${ms}: ${back}`);
    }), { numRuns: 3000 });
    for (const ms of [1, 86399999, 86400000, 951782400000, 4107542399999, 253402300799999, 253402300800000]) {
      const back = decodeTakMessage(encodeTakMessage(Buffer.from(`<event uid="u" type="t" time="${new Date(ms).toISOString()}"><point lat="0" lon="0"/></event>`)))!.toString();
      assert.ok(back.includes(`time="${new Date(ms).toISOString()}"`), `${ms}: ${back}`);
    }
  });

  describe('streaming frame and limits', () => {
    it('is 0xBF, a varint length, then the TakMessage', () => {
      const xml = Buffer.from(samples[0][1]);
      const bare = encodeTakMessage(xml);
      const framed = encodeStreamMessage(xml)!;
      assert.equal(framed[0], TAK_MAGIC);
      assert.ok(bare.length >= 128 && bare.length < 16384);
      assert.equal((framed[1] & 0x7f) + (framed[2] << 7), bare.length);
      assert.deepEqual(framed.subarray(3), bare);
    });

    it('refuses (null) an event whose message would reach 64 KiB', () => {
      const big = (n: number) => Buffer.from(`<event version="2.0" uid="u" type="t"><point lat="0" lon="0" hae="0" ce="0" le="0"/><detail><remarks>${'x'.repeat(n)}</remarks></detail></event>`);
      let n = 65000;
      while (encodeStreamMessage(big(n)) !== null) n += 16;
      const last = encodeStreamMessage(big(n - 16))!;
      assert.ok(last.length <= MAX_STREAM_MESSAGE && last.length > MAX_STREAM_MESSAGE - 20);
      assert.equal(encodeStreamMessage(big(200000)), null);
      assert.ok(encodeTakMessage(big(200000)).length > 200000, 'the bare encoder has no limit');
    });

    it('a message without a CotEvent decodes to null', () => {
      assert.equal(decodeTakMessage(Buffer.alloc(0)), null);
      const ctl = upstream.encode(upstream.fromObject({ takControl: { minProtoVersion: 1, maxProtoVersion: 1 } })).finish();
      assert.equal(decodeTakMessage(Buffer.from(ctl)), null);
    });

    it('malformed messages throw TakProtoError, never anything else', () => {
      const good = encodeTakMessage(Buffer.from(samples[0][1]));
      for (const bad of [
        Buffer.from([0x12, 0x05, 0x0a]), // length beyond the message
        Buffer.from([0x12]), // truncated
        Buffer.from([0x13]), // group wire type
        Buffer.from([0x12, 0x02, 0x31, 0x00]), // type as a double
        Buffer.from([0x12, 0x0b, 0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // time beyond Date
        good.subarray(0, good.length - 3),
      ]) {
        assert.throws(() => decodeTakMessage(bad), TakProtoError, bad.toString('hex'));
      }
      fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (junk, cut) => {
        const inputs = [Buffer.from(junk), Buffer.concat([good.subarray(0, cut % good.length), Buffer.from(junk)])];
        for (const b of inputs) {
          try {
            const r = decodeTakMessage(b);
            if (r !== null) assert.ok(r.length > 0);
          } catch (e) {
            assert.ok(e instanceof TakProtoError, String(e));
          }
        }
      }), { numRuns: 1000 });
    });
  });
});
