import assert from 'node:assert/strict';
import { Framer, type FrameRejectReason } from '../../protocol/framer.ts';
import { scan } from '../../protocol/scan.ts';
import { loadSamples } from '../helpers/samples.ts';

interface Collected { frames: string[]; rejects: [FrameRejectReason, string][]; framer: Framer }

/** Feeds `input` to a new framer in chunks of the given sizes (cycled), copies every frame. */
function collect(input: Buffer | string, sizes: number[] = [Infinity], max?: number): Collected {
  const buf = typeof input === 'string' ? Buffer.from(input) : input;
  const frames: string[] = [];
  const rejects: [FrameRejectReason, string][] = [];
  const framer = new Framer({
    frame: (f) => frames.push(f.toString('utf8')),
    reject: (r, d) => rejects.push([r, d]),
  }, max);
  let p = 0;
  let i = 0;
  while (p < buf.length) {
    const size = Math.max(1, Math.min(sizes[i++ % sizes.length], buf.length - p));
    framer.push(buf.subarray(p, p + size));
    p += size;
  }
  return { frames, rejects, framer };
}

function accounted(c: Collected, total: number): void {
  const f = c.framer;
  assert.equal(f.framedBytes + f.ignoredBytes + f.skippedBytes + f.buffered, total, 'every byte is accounted for');
}

const samples = loadSamples();
/** the sample's <event …>…</event> without declaration and surrounding white space */
function eventOf(xml: Buffer): string {
  const s = xml.toString('utf8');
  return s.slice(s.indexOf('<event'), s.lastIndexOf('</event>') + 8);
}

describe('framer', () => {
  const all = [...samples.values()];
  const stream = Buffer.concat(all);
  const expected = all.map(eventOf);

  it('frames every sample, concatenated as sent (declarations, CRLF, tab before <event, both quote styles)', () => {
    const c = collect(stream);
    assert.deepEqual(c.frames, expected);
    assert.deepEqual(c.rejects, []);
    assert.equal(c.framer.skippedBytes, 0);
    assert.equal(c.framer.buffered, 0);
    accounted(c, stream.length);
    for (const f of c.frames) assert.ok(scan(Buffer.from(f)).ok, f);
  });

  it('same frames one byte at a time, and at every split point', () => {
    assert.deepEqual(collect(stream, [1]).frames, expected);
    assert.deepEqual(collect(stream, [2, 3, 5, 7, 11]).frames, expected);
    const one = samples.get('03-geochat-direct-atak-to-wintak.xml')!;
    for (let i = 1; i < one.length; i++) {
      const c = collect(one, [i, one.length]);
      assert.deepEqual(c.frames, [eventOf(one)], `split at ${i}`);
      accounted(c, one.length);
    }
  });

  it('inside sink.frame() the counters cover the stream exactly up to the end of that frame', () => {
    const junky = Buffer.concat([Buffer.from('junk '), stream, Buffer.from('<foo/>'), stream]);
    for (const size of [Infinity, 1, 7, 100]) {
      let seen = 0;
      const f: Framer = new Framer({
        frame: (b) => {
          const upTo = f.framedBytes + f.ignoredBytes + f.skippedBytes;
          assert.ok(junky.subarray(upTo - b.length, upTo).equals(b));
          seen++;
        },
        reject: () => assert.fail(),
      });
      for (let p = 0; p < junky.length; p += size === Infinity ? junky.length : size) f.push(junky.subarray(p, p + (size === Infinity ? junky.length : size)));
      assert.equal(seen, 2 * expected.length);
    }
  });

  it('a frame in one chunk is a slice of it (no copy); a split frame is reassembled once', () => {
    const chunk = Buffer.from(`<event uid="a" type="b"></event>`);
    let got: Buffer | undefined;
    const f = new Framer({ frame: (b) => { got = b; }, reject: () => assert.fail() });
    f.push(chunk);
    assert.equal(got!.buffer, chunk.buffer);
    assert.equal(got!.byteOffset, chunk.byteOffset);
    got = undefined;
    f.push(chunk.subarray(0, 10));
    assert.equal(got, undefined);
    assert.equal(f.buffered, 10);
    f.push(chunk.subarray(10));
    assert.equal(got!.toString(), chunk.toString());
    assert.equal(f.buffered, 0);
  });

  it('white space, newlines, declarations, comments and PIs between events are ignored, not skipped', () => {
    const e = '<event uid="a" type="b"/>';
    const input = `\n\t ${e}\r\n<?xml version="1.0"?>\n<!-- between -->${e}<?foo bar?>  ${e}\n`;
    for (const sizes of [[Infinity], [1], [3]]) {
      const c = collect(input, sizes);
      assert.deepEqual(c.frames, [e, e, e]);
      assert.equal(c.framer.skippedBytes, 0);
      accounted(c, Buffer.byteLength(input));
    }
  });

  it('one broken event never swallows the ones after it: a "<" inside a quoted value, </event> inside markup, an unclosed comment or CDATA', () => {
    const good = eventOf(all[0]);
    const broken = [
      // a quote inside a value, as a client building XML by string concatenation writes it
      '<event uid="a" type="b"><detail><contact callsign="O"Brien" endpoint="*:-1:stcp"/></detail></event>',
      // an unescaped "<" in text, then an apostrophe: the "tag" it opened has a value that never ends
      `<event uid="a" type="b"><detail><remarks>range <5m, it's clear</remarks></detail></event>`,
      // </event> inside a value (XML allows no "<" there at all)
      `<event uid="a" type="b"><detail><x a="</event>" b='</event>'/></detail></event>`,
      `<event uid="a</event>" type='b</event>'></event>`,
      // </event> inside markup: refused (the scan refuses such a frame whole when it is read at once)
      '<event uid="a" type="b"><detail><remarks><![CDATA[ </event> ]] ]> ]]></remarks></detail></event>',
      '<event uid="a" type="b"><!-- </event> - -- --></event>',
      '<event uid="a" type="b"><?pi </event> ? ?></event>',
      // markup that never closes
      '<event uid="a" type="b"><detail><!-- a comment left open</detail></event>',
      '<event uid="a" type="b"><detail><remarks><![CDATA[ left open</remarks></detail></event>',
      '<event uid="a" type="b"><?pi left open</event>',
      // both at once: a value holding the start of an event and a comment
      '<event uid="bad" type="a"><detail><contact callsign="<event><!--"/></detail></event>',
    ];
    for (const bad of broken) {
      // one broken event among 200 good ones (~100 KB after it): each good one arrives
      const input = [good, bad, ...Array(200).fill(good)].join('\n');
      for (const sizes of [[Infinity], [1], [7, 300], [4096]]) {
        const c = collect(input, sizes);
        assert.equal(c.frames.filter((f) => f === good).length, 201, `${bad} in chunks of ${sizes}`);
        assert.ok(c.frames.every((f) => f === good || !scan(Buffer.from(f)).ok), 'nothing else passes as an event');
        assert.ok(c.rejects.every(([r]) => r === 'malformed'), JSON.stringify(c.rejects));
        const refusals = c.rejects.length + c.frames.filter((f) => f !== good).length;
        assert.ok(refusals >= 1 && refusals <= 2, `the broken event is refused (${refusals})`);
        accounted(c, Buffer.byteLength(input));
      }
    }
  });

  it('end tag with white space, self-closing root, <event> without attributes', () => {
    const frames = ['<event uid="a" type="b"></event \n>', '<event uid="a" type="b"/>', `<event\tuid='a'\ntype='b'\n/>`, '<event></event>'];
    for (const sizes of [[Infinity], [1]]) assert.deepEqual(collect(frames.join(''), sizes).frames, frames);
  });

  it('does not mistake <events>, </eventx> or <eventual> for frame boundaries', () => {
    const f = '<event uid="a" type="b"><eventx></eventx><detail/></event>';
    const c = collect(`<events>${f}<eventual/>`);
    assert.deepEqual(c.frames, [f]);
    assert.equal(c.framer.skippedBytes, '<events>'.length + '<eventual/>'.length);
  });

  it('skips and counts junk, resynchronising at the next <event', () => {
    const e = '<event uid="a" type="b"/>';
    const junk = 'GET / HTTP/1.1\r\n<foo>bar</foo> < <<ev <even';
    const input = `${junk}${e}garbage${e}`;
    for (const sizes of [[Infinity], [1], [5]]) {
      const c = collect(input, sizes);
      assert.deepEqual(c.frames, [e, e]);
      assert.equal(c.framer.skippedBytes, junk.length + 'garbage'.length);
      accounted(c, input.length);
    }
  });

  it('discards an oversize frame without buffering it whole, then resynchronises', () => {
    const max = 1024;
    const big = `<event uid="a" type="b"><detail><remarks>${'x'.repeat(5000)}</remarks></detail></event>`;
    const small = '<event uid="s" type="b"/>';
    const exact = `<event uid="e" type="b"><detail>${'y'.repeat(max - 49)}</detail></event>`;
    assert.equal(exact.length, max);
    const input = `${small}${big}${small}${exact}`;
    for (const sizes of [[Infinity], [1], [100]]) {
      let maxBuffered = 0;
      const frames: string[] = [];
      const rejects: string[] = [];
      const f = new Framer({ frame: (b) => frames.push(b.toString()), reject: (r) => rejects.push(r) }, max);
      for (let p = 0; p < input.length; p += sizes[0] === Infinity ? input.length : sizes[0]) {
        f.push(Buffer.from(input.slice(p, p + (sizes[0] === Infinity ? input.length : sizes[0]))));
        maxBuffered = Math.max(maxBuffered, f.buffered);
      }
      assert.deepEqual(frames, [small, small, exact], `sizes ${sizes}`);
      assert.deepEqual(rejects, ['oversize']);
      assert.ok(maxBuffered <= max);
      assert.equal(f.skippedBytes, big.length);
    }
    // one byte over the limit is oversize
    const over = `<event uid="e" type="b"><detail>${'y'.repeat(max - 48)}</detail></event>`;
    assert.deepEqual(collect(over, [Infinity], max).rejects.map((r) => r[0]), ['oversize']);
  });

  it('rejects <!DOCTYPE and <!ENTITY between and inside events as malformed', () => {
    const e = '<event uid="a" type="b"/>';
    const input = `<!DOCTYPE lol [<!ENTITY lol "lol">]>${e}<event uid="x" type="y"><!ENTITY x "y"></event>${e}`;
    for (const sizes of [[Infinity], [1]]) {
      const c = collect(input, sizes);
      assert.deepEqual(c.frames, [e, e]);
      assert.deepEqual(c.rejects.map((r) => r[0]), ['malformed', 'malformed']);
      accounted(c, input.length);
    }
  });

  it('buffered reflects an unfinished frame; a tentative "<eve" prefix is held', () => {
    const c = collect('<event uid="a" type="b"/>   <eve');
    assert.equal(c.frames.length, 1);
    assert.equal(c.framer.buffered, 4);
    c.framer.push(Buffer.from('nt uid="c" type="d"/>'));
    assert.equal(c.frames.length, 2);
    assert.equal(c.frames[1], '<event uid="c" type="d"/>');
  });
});
