// protocol/charset.ts: the declared encoding before an event, and windows-1252 to UTF-8.
import assert from 'node:assert/strict';
import { declaredEncoding, isWestern, windows1252ToUtf8 } from '../../protocol/charset.ts';

describe('protocol: declared single-byte encodings', () => {
  const at = (s: string) => { const b = Buffer.from(s, 'latin1'); return declaredEncoding(b, b.indexOf('<event')); };

  it('finds the encoding of the declaration right before the event, quotes and white space as XML allows', () => {
    assert.equal(at('<?xml version="1.0" encoding="ISO-8859-1"?><event/>'), 'iso-8859-1');
    assert.equal(at("junk<?xml version='1.0' encoding = 'Windows-1252' standalone='yes'?>\r\n\t <event/>"), 'windows-1252');
    assert.equal(at('<?xml version="1.0" encoding="UTF-8"?>\n<event/>'), 'utf-8');
  });

  it('none when there is no declaration right before, or it names no encoding', () => {
    assert.equal(at('<event/>'), undefined);
    assert.equal(at('<?xml version="1.0"?><event/>'), undefined);
    assert.equal(at('<?xml version="1.0" encoding="ISO-8859-1"?><x/><event/>'), undefined, 'something between');
    assert.equal(at(`<?xml version="1.0" encoding="ISO-8859-1" ${'x'.repeat(600)}?><event/>`), undefined, 'too far back to be one');
    assert.equal(at('<?pi encoding="latin1"?><event/>'), undefined, 'another processing instruction');
  });

  it('the Western labels, and no other', () => {
    for (const l of ['iso-8859-1', 'latin1', 'windows-1252', 'cp1252', 'us-ascii', 'iso_8859-1']) assert.ok(isWestern(l), l);
    for (const l of ['utf-8', 'utf-16', 'iso-8859-2', 'shift_jis', '']) assert.ok(!isWestern(l), l);
  });

  it('windows-1252 bytes become the same text in UTF-8, 0x80-0x9F included', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const got = [...windows1252ToUtf8(all).toString('utf8')];
    assert.equal(got.length, 256);
    // outside 0x80-0x9F the byte is the code point (ISO-8859-1)
    for (let i = 0; i < 256; i++) if (i < 0x80 || i > 0x9f) assert.equal(got[i], String.fromCharCode(i), `byte ${i}`);
    // 0x80-0x9F from the WHATWG windows-1252 index (this Node's TextDecoder lacks it: no full ICU)
    assert.equal(got.slice(0x80, 0xa0).join(''), '€\x81‚ƒ„…†‡ˆ‰Š‹Œ\x8DŽ\x8F\x90‘’“”•–—˜™š›œ\x9DžŸ');
    assert.equal(windows1252ToUtf8(Buffer.from([0x43, 0x61, 0x66, 0xe9, 0x20, 0x80])).toString(), 'Café €');
    assert.equal(windows1252ToUtf8(Buffer.from('plain ascii')).toString(), 'plain ascii');
  });
});
