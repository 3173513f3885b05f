import assert from 'node:assert/strict';
import { scan, ScanReason, type CotHeader, type ScanError } from '../../protocol/scan.ts';
import { loadSamples } from '../helpers/samples.ts';

const samples = loadSamples();

function ok(xml: string | Buffer): CotHeader {
  const r = scan(typeof xml === 'string' ? Buffer.from(xml) : xml);
  if (!r.ok) assert.fail(`expected ok, got ${r.reason} at ${r.offset}`);
  return r;
}
function bad(xml: string | Buffer): ScanError {
  const r = scan(typeof xml === 'string' ? Buffer.from(xml) : xml);
  if (r.ok) assert.fail(`expected a rejection of ${String(xml).slice(0, 120)}`);
  return r;
}
const ev = (inner = '', attrs = 'uid="u1" type="a-f-G"') => `<event version="2.0" ${attrs}>${inner}</event>`;

describe('scan: the real samples', () => {
  it('01 ATAK SA (declaration, tab before <event, contact, __group)', () => {
    const h = ok(samples.get('01-sa-atak-civ-4.0-streaming.xml')!);
    assert.equal(h.uid, 'ANDROID-aabbcc5577');
    assert.equal(h.type, 'a-f-G-U-C');
    assert.equal(h.how, 'h-e');
    assert.equal(h.version, '2.0');
    assert.equal(h.time, '2020-08-19T08:01:32.157Z');
    assert.equal(h.start, '2020-08-19T08:01:32.157Z');
    assert.equal(h.stale, '2020-08-19T08:07:47.157Z');
    assert.equal(h.staleMs, Date.UTC(2020, 7, 19, 8, 7, 47, 157));
    assert.deepEqual(h.point, { lat: 50.123, lon: 30.123, hae: 77.8140859592704, ce: 9.9, le: 9999999 });
    assert.equal(h.callsign, 'cs');
    assert.equal(h.endpoint, '*:-1:stcp');
    assert.equal(h.groupName, 'Dark Green');
    assert.equal(h.groupRole, 'Team Member');
    assert.deepEqual(h.dests, []);
    assert.equal(h.martiStart, -1);
    assert.equal(h.martiEnd, -1);
    assert.equal(h.linkUid, undefined);
    assert.equal(h.hasLink, false);
    assert.equal(h.control, false);
  });

  it('03 GeoChat: marti dest and the byte range of <marti>', () => {
    const buf = samples.get('03-geochat-direct-atak-to-wintak.xml')!;
    const h = ok(buf);
    assert.equal(h.type, 'b-t-f');
    assert.equal(h.uid, 'GeoChat.ANDROID-d8c7f552857ee744.HUMMER.a77c739b-213a-4f74-879f-014175867dc9');
    assert.deepEqual(h.dests, [{ callsign: 'HUMMER' }]);
    assert.equal(buf.toString('utf8', h.martiStart, h.martiEnd), '<marti>\n      <dest callsign="HUMMER"/>\n    </marti>');
    assert.equal(h.linkUid, 'ANDROID-d8c7f552857ee744');
    assert.equal(h.callsign, undefined);
    assert.equal(h.endpoint, undefined);
    // stripping the range leaves a well-formed event without marti
    const stripped = Buffer.concat([buf.subarray(0, h.martiStart), buf.subarray(h.martiEnd)]);
    const s = ok(stripped);
    assert.deepEqual(s.dests, []);
    assert.equal(s.martiStart, -1);
  });

  it('06 911 alert, 07 spot marker in single quotes, 10 delete with point after detail', () => {
    const a = ok(samples.get('06-emergency-911-b-a-o-tbl.xml')!);
    assert.equal(a.type, 'b-a-o-tbl');
    assert.equal(a.callsign, 'BOB-Alert');
    assert.equal(a.linkUid, 'ANDROID-358982072593830');
    assert.equal(a.how, 'm-g');
    const m = ok(samples.get('07-marker-spot-b-m-p-s-m.xml')!);
    assert.equal(m.uid, '9405e320-9356-41c4-8449-f46990aa17f8');
    assert.equal(m.type, 'b-m-p-s-m');
    assert.equal(m.callsign, 'R 1');
    assert.equal(m.linkUid, 'ANDROID-589520ccfcd20f01');
    assert.deepEqual(m.point, { lat: 38.85606343062312, lon: -77.0563755018233, hae: 9999999, ce: 9999999, le: 9999999 });
    const d = ok(samples.get('10-delete-forcedelete-t-x-d-d.xml')!);
    assert.equal(d.type, 't-x-d-d');
    assert.equal(d.uid, '55555-XXX-XXX');
    assert.equal(d.linkUid, 'ANDROID-78:4b:87:f3:5b:0c');
    assert.equal(d.control, false);
    assert.deepEqual(d.point, { lat: 36.789783, lon: -115.471535, hae: 4433.086151, ce: 9999999, le: 9999999 });
  });

  it('control types: takp v/q/r, pings and pong; unparseable stale is NaN', () => {
    for (const [f, type] of [
      ['11-takp-v-protocol-support-spec.xml', 't-x-takp-v'],
      ['12-takp-q-request-spec.xml', 't-x-takp-q'],
      ['13-takp-r-response-spec.xml', 't-x-takp-r'],
      ['14-ping-node-tak-generated.xml', 't-x-c-t'],
      ['15-pong-takserver-template.xml', 't-x-c-t-r'],
      ['18-ping-atak-commo.xml', 't-x-c-t'],
    ] as const) {
      const h = ok(samples.get(f)!);
      assert.equal(h.type, type, f);
      assert.equal(h.control, true, f);
      assert.equal(h.hasLink, false, f);
    }
    assert.ok(Number.isNaN(ok(samples.get('11-takp-v-protocol-support-spec.xml')!).staleMs));
    const ping = ok(samples.get('14-ping-node-tak-generated.xml')!);
    assert.deepEqual(ping.point, { lat: 0, lon: 0, hae: 0, ce: 9999999, le: 9999999 });
    assert.equal(ok(samples.get('18-ping-atak-commo.xml')!).uid, 'ANDROID-82cd68af1fb8fd80-ping');
    assert.equal(ok(samples.get('15-pong-takserver-template.xml')!).uid, 'takPong');
  });

  it('t-x-d-d and ordinary types are not control', () => {
    assert.equal(ok(ev('', 'uid="x" type="t-x-d-d"')).control, false);
    assert.equal(ok(ev('', 'uid="x" type="t-x-c"')).control, false);
    assert.equal(ok(ev('', 'uid="x" type="t-x-c-foo"')).control, true);
  });
});

describe('scan: fields', () => {
  it('decodes entity and character references and UTF-8', () => {
    const h = ok(ev('<detail><contact callsign="A&amp;B &lt;&gt;&quot;&apos; &#65;&#x42;&#x1F600; Zoë 北京"/></detail>'));
    assert.equal(h.callsign, 'A&B <>"\' AB\u{1F600} Zoë 北京');
  });

  it('normalises literal tab/LF/CR in attribute values, keeps them when written as references', () => {
    const h = ok(ev('<detail><contact callsign="a\tb\r\nc\rd\ne" endpoint="x&#9;y&#10;z&#13;"/></detail>'));
    assert.equal(h.callsign, 'a b c d e');
    assert.equal(h.endpoint, 'x\ty\nz\r');
  });

  it('order of elements and attributes does not matter; missing optional parts are fine', () => {
    const h = ok('<event type="a-f" uid="u"><detail><__group name="Cyan" role="HQ"/><contact callsign="c"/></detail><point le="5" ce="4" hae="3" lon="2" lat="1"/></event>');
    assert.deepEqual(h.point, { lat: 1, lon: 2, hae: 3, ce: 4, le: 5 });
    assert.equal(h.groupName, 'Cyan');
    assert.equal(h.groupRole, 'HQ');
    const m = ok('<event uid="u" type="a"/>');
    assert.equal(m.how, undefined);
    assert.equal(m.stale, undefined);
    assert.ok(Number.isNaN(m.staleMs));
    assert.equal(m.point, undefined);
    const p = ok(ev('<point lat="1"/>'));
    assert.equal(p.point!.lat, 1);
    assert.ok(Number.isNaN(p.point!.lon));
  });

  it('fields read only after the frame Buffer is overwritten are still right (some are made lazily)', () => {
    const pad = '<x/>'.repeat(1100); // > 4 KiB: the frame whose fields are all made at once
    for (const inner of ['', pad]) {
      const xml = `<event version="2.0" uid="u" type="a-f" how="h&amp;e" time="2020-01-01T00:00:00Z" start="S" stale="2020-01-01T00:05:00.5Z">` +
        `<point lat="1.5" lon="&#50;" hae="-3" ce="" le="9999999.0"/><detail><__group name="Zoë" role="HQ"/></detail>${inner}</event>`;
      const buf = Buffer.from(xml);
      const h = ok(buf);
      buf.fill(0x78); // the framer's buffers are reused once push() returns
      assert.equal(h.how, 'h&e');
      assert.equal(h.time, '2020-01-01T00:00:00Z');
      assert.equal(h.start, 'S');
      assert.equal(h.stale, '2020-01-01T00:05:00.5Z');
      assert.equal(h.staleMs, Date.UTC(2020, 0, 1, 0, 5, 0, 500));
      assert.equal(h.version, '2.0');
      assert.deepEqual(h.point, { lat: 1.5, lon: 2, hae: -3, ce: NaN, le: 9999999 });
      assert.equal(h.groupName, 'Zoë');
      assert.equal(h.groupRole, 'HQ');
      assert.equal(h.point, h.point); // made once
      const plain = JSON.parse(JSON.stringify(h));
      assert.equal(plain.time, '2020-01-01T00:00:00Z');
      assert.equal(plain.groupRole, 'HQ');
    }
    const lazyPoint = ok(ev('<point lat="1.5" lon="2" hae="-3" ce="" le="1e3"/>'));
    assert.deepEqual(lazyPoint.point, { lat: 1.5, lon: 2, hae: -3, ce: NaN, le: 1000 });
  });

  it('only detail/contact, detail/__group, detail/marti/dest, detail/link count', () => {
    const h = ok(ev('<contact callsign="wrong"/><detail><x><contact callsign="nested"/><marti><dest callsign="n"/></marti><link uid="l0"/></x><dest callsign="d0"/><contact callsign="right"/><contact callsign="second"/></detail>'));
    assert.equal(h.callsign, 'right');
    assert.deepEqual(h.dests, []);
    assert.equal(h.linkUid, undefined);
    assert.equal(h.martiStart, -1);
  });

  it('several dests (callsign and uid), the first link, <marti/> empty', () => {
    const xml = ev('<detail><link relation="p-p"/><link uid="second"/><marti><dest callsign="A"/><dest uid="U-2"/><dest callsign="B" uid="U-3"/></marti></detail>');
    const h = ok(xml);
    assert.deepEqual(h.dests, [{ callsign: 'A' }, { uid: 'U-2' }, { callsign: 'B', uid: 'U-3' }]);
    assert.equal(h.hasLink, true);
    assert.equal(h.linkUid, undefined);
    const buf = Buffer.from(ev('<detail><marti/></detail>'));
    const e = ok(buf);
    assert.equal(buf.toString('latin1', e.martiStart, e.martiEnd), '<marti/>');
    assert.deepEqual(e.dests, []);
  });

  it('a nested self-closing <event/> is just an element', () => {
    assert.equal(ok(ev('<detail><event uid="x" type="y"/></detail>')).uid, 'u1');
  });

  it('several <marti> elements: the first in martiStart/End, the others in martiMore; all dests count', () => {
    const buf = Buffer.from(ev('<detail><marti><dest callsign="A"/></marti><x/><marti/><marti>\n<dest uid="U"/></marti></detail>'));
    const h = ok(buf);
    assert.equal(buf.toString('latin1', h.martiStart, h.martiEnd), '<marti><dest callsign="A"/></marti>');
    assert.deepEqual(h.martiMore!.length, 4);
    assert.equal(buf.toString('latin1', h.martiMore![0], h.martiMore![1]), '<marti/>');
    assert.equal(buf.toString('latin1', h.martiMore![2], h.martiMore![3]), '<marti>\n<dest uid="U"/></marti>');
    assert.deepEqual(h.dests, [{ callsign: 'A' }, { uid: 'U' }]);
    assert.equal(ok(ev('<detail><marti/></detail>')).martiMore, undefined);
  });

  it('accepts a leading declaration, comments, PIs and CDATA anywhere legal', () => {
    const h = ok('<?xml version="1.0"?>\n<!-- hi --><event uid="u" type="t"><!-- </event --><!-- </event\n> --><detail><remarks><![CDATA[ </event > </events> <x> & ]]></remarks><?pi </eventx>?></detail></event>\n<!-- </event> -->\n');
    assert.equal(h.uid, 'u');
  });

  it("rejects the bytes '</event>' inside a comment, CDATA or a PI: TAK clients cut their stream there", () => {
    // what a recipient splitting at "</event>" (ATAK's commo, node-tak, pytak) would read as a
    // second event, never checked by the server: an SA under another client's uid
    const smuggled = '<event version="2.0" uid="ANDROID-victim" type="a-h-G" time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z" stale="2030-01-01T00:00:00Z" how="h-e"><point lat="1" lon="2" hae="0" ce="9" le="9"/><detail><contact callsign="VICTIM" endpoint="*:-1:stcp"/></detail></event>';
    for (const [inner, at] of [
      [`<detail><remarks><![CDATA[hi </event>${smuggled} bye]]></remarks></detail>`, '<![CDATA[hi '],
      [`<detail><!-- </event>${smuggled} --></detail>`, '<!-- '],
      [`<detail/><?note </event>${smuggled}?>`, '<?note '],
      ['<![CDATA[</event>]]>', '<![CDATA['],
    ] as const) {
      const xml = ev(inner);
      const r = bad(xml);
      assert.equal(r.reason, ScanReason.endTagInMarkup, inner);
      assert.equal(r.offset, xml.indexOf(at) + at.length, inner);
    }
  });
});

describe('scan: rejections', () => {
  const cases: [string, string, string][] = [
    ['empty', '', ScanReason.empty],
    ['only white space', '  \n', ScanReason.empty],
    ['not an event', '<foo uid="u" type="t"/>', ScanReason.notEvent],
    ['no uid', '<event type="t"/>', ScanReason.noUid],
    ['empty uid', '<event uid="" type="t"/>', ScanReason.noUid],
    ['no type', '<event uid="u"/>', ScanReason.noType],
    ['unclosed', '<event uid="u" type="t"><detail></event>', ScanReason.endTag],
    ['unclosed at end', '<event uid="u" type="t"><detail>', ScanReason.unclosed],
    ['wrong end tag', ev('<a></b>'), ScanReason.endTag],
    ['end tag prefix', ev('<ab></a>'), ScanReason.endTag],
    ['end tag longer', ev('<a></ab>'), ScanReason.endTag],
    ['stray <', ev('<detail> < </detail>'), ScanReason.tagName],
    ['stray < in attribute', ev('<a b="<"/>'), ScanReason.attrLt],
    ['unquoted attribute', ev('<a b=c/>'), ScanReason.attrQuote],
    ['mismatched quotes', ev(`<a b="c'/>`), ScanReason.attrLt],
    ['no =', ev('<a b/>'), ScanReason.attrEq],
    ['no space between attributes', ev('<a b="1"c="2"/>'), ScanReason.attrSpace],
    ['duplicate attribute', ev('<a b="1" b="2"/>'), ScanReason.attrDuplicate],
    ['duplicate attribute among many', ev(`<a ${Array.from({ length: 30 }, (_, i) => `a${i}="1"`).join(' ')} a17="x"/>`), ScanReason.attrDuplicate],
    ['unknown entity', ev('<a b="&nbsp;"/>'), ScanReason.reference],
    ['bare &', ev('<a b="a & b"/>'), ScanReason.reference],
    ['bare & in text', ev('<a>a & b</a>'), ScanReason.reference],
    ['char ref to NUL', ev('<a b="&#0;"/>'), ScanReason.reference],
    ['char ref beyond Unicode', ev('<a b="&#x110000;"/>'), ScanReason.reference],
    ['control character', ev('<a b="\u0001"/>'), ScanReason.char],
    ['control character in text', ev('<a>\u0008</a>'), ScanReason.char],
    ['DOCTYPE', '<!DOCTYPE event [<!ENTITY a "b">]><event uid="u" type="t"/>', ScanReason.doctype],
    ['ENTITY inside', ev('<!ENTITY a "b">'), ScanReason.doctype],
    ['two roots', '<event uid="u" type="t"/><event uid="u" type="t"/>', ScanReason.trailing],
    ['text after root', '<event uid="u" type="t"/>x', ScanReason.trailing],
    ['text before root', 'x<event uid="u" type="t"/>', ScanReason.textOutside],
    [']]> in text', ev('<a>]]></a>'), ScanReason.cdataEnd],
    ['-- in comment', ev('<!-- a -- b -->'), ScanReason.comment],
    ['unterminated comment', ev('<!-- a'), ScanReason.comment],
    ['unterminated CDATA', ev('<![CDATA[ a'), ScanReason.cdata],
    ['xml declaration inside', ev('<?xml version="1.0"?>'), ScanReason.xmlDecl],
    ['unterminated tag', '<event uid="u" type="t"', ScanReason.tagUnterminated],
    ['unterminated value', '<event uid="u" type="t', ScanReason.attrUnterminated],
    ['slash not before >', ev('<a / >'), ScanReason.badSlash],
    ['bad tag name', ev('<1a/>'), ScanReason.tagName],
    ['bad attribute name', ev('<a 1="x"/>'), ScanReason.attrName],
    ['nested event', ev('<detail><event uid="x" type="y"></event></detail>'), ScanReason.nestedEvent],
  ];
  for (const [name, xml, reason] of cases) {
    it(name, () => assert.equal(bad(xml).reason, reason));
  }

  it('invalid UTF-8 anywhere', () => {
    const mk = (bytes: number[], where: 'attr' | 'text' | 'name') => {
      const pre = Buffer.from(where === 'attr' ? '<event uid="u" type="t"><a b="' : where === 'text' ? '<event uid="u" type="t"><a>' : '<event uid="u" type="t"><a');
      const post = Buffer.from(where === 'attr' ? '"/></event>' : where === 'text' ? '</a></event>' : '/></event>');
      return Buffer.concat([pre, Buffer.from(bytes), post]);
    };
    const invalid = [[0x80], [0xc0, 0x80], [0xc3], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xff], [0xef, 0xbf, 0xbe]];
    for (const where of ['attr', 'text', 'name'] as const) {
      for (const seq of invalid) assert.equal(bad(mk(seq, where)).reason, ScanReason.utf8, `${where} ${seq}`);
      assert.equal(ok(mk([0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80], where)).uid, 'u');
    }
  });

  it('reports the offset of the problem', () => {
    const xml = ev('<a></b>');
    assert.equal(bad(xml).offset, xml.indexOf('</b>'));
  });
});
