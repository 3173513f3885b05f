import assert from 'node:assert/strict';
import fc from 'fast-check';
import { escapeAttr, streamable } from '../../protocol/xml.ts';
import { scan } from '../../protocol/scan.ts';

/** what an XML parser can hand back for s: chars XML 1.0 cannot carry become U+FFFD */
function representable(s: string): string {
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

describe('escapeAttr', () => {
  it('escapes markup characters and keeps plain strings as they are', () => {
    assert.equal(escapeAttr('plain-ANDROID_1.2'), 'plain-ANDROID_1.2');
    assert.equal(escapeAttr(`A&B <x> "q" 'a'`), 'A&amp;B &lt;x&gt; &quot;q&quot; &apos;a&apos;');
    assert.equal(escapeAttr('a\tb\nc\rd\u0001e\ud800'), 'a&#9;b&#10;c&#13;d\ufffde\ufffd');
  });

  it('any string survives a round trip through the scan, in either quote style', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => {
      for (const q of ['"', "'"]) {
        const xml = `<event uid=${q}u${q} type=${q}t${q}><detail><contact callsign=${q}${escapeAttr(s)}${q}/></detail></event>`;
        const h = scan(Buffer.from(xml));
        assert.ok(h.ok, xml);
        assert.equal(h.callsign, representable(s));
      }
    }), { numRuns: 2000 });
  });
});

describe('streamable', () => {
  it('the usual frame is returned as it is; others start with "<event " and end in exactly </event>, still well-formed', () => {
    const usual = Buffer.from('<event uid="u" type="t"><detail/></event>');
    assert.equal(streamable(usual), usual);
    assert.equal(usual.toString(), '<event uid="u" type="t"><detail/></event>');
    for (const [frame, want] of [
      ['<event uid="u" type="t"/>', '<event uid="u" type="t"></event>'],
      [`<event uid='u' type='t'\n />`, `<event uid='u' type='t'\n ></event>`],
      ['<event uid="u" type="t"><detail/></event >', '<event uid="u" type="t"><detail/></event>'],
      ['<event uid="u" type="t"><detail/></event\r\n\t>', '<event uid="u" type="t"><detail/></event>'],
      ['<event\n uid="u"\ttype="t"><detail/></event>', '<event  uid="u"\ttype="t"><detail/></event>'],
      ['<event\tuid="u" type="t"/>', '<event uid="u" type="t"></event>'],
      ['<event\r\nuid="u" type="t"></event\n>', '<event \nuid="u" type="t"></event>'],
    ]) {
      assert.ok(scan(Buffer.from(frame)).ok, frame);
      const out = streamable(Buffer.from(frame)).toString();
      assert.equal(out, want);
      const h = scan(Buffer.from(out));
      assert.ok(h.ok && h.uid === 'u' && h.type === 't', out);
    }
  });
});
