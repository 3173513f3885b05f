// The WebAssembly scan core (protocol/core.ts, protocol/wasm/scan.ts): what is particular to it —
// 16-byte SIMD loads near range ends, bytes left in its memory by earlier scans, memory growth,
// nested use from a sink, the hash table for elements with many attributes. The checks themselves
// are covered by scan/framer/property/hostile tests through the same core.
import assert from 'node:assert/strict';
import { Framer } from '../../protocol/framer.ts';
import { scan, ScanReason, type CotHeader } from '../../protocol/scan.ts';
import { core, top } from '../../protocol/core.ts';
import { loadSamples } from '../helpers/samples.ts';

const samples = loadSamples();
const SA = samples.get('01-sa-atak-civ-4.0-streaming.xml')!;

function frames(stream: Buffer, sizes: number[], max?: number): { frames: string[]; uids: string[]; rejects: string[] } {
  const out: string[] = [];
  const uids: string[] = [];
  const rejects: string[] = [];
  const f = new Framer({
    frame: (b) => { out.push(b.toString()); const h = scan(b); uids.push(h.ok ? h.uid : `!${h.reason}`); },
    reject: (r, d) => rejects.push(`${r} ${d}`),
  }, max);
  let p = 0;
  for (let i = 0; p < stream.length; i++) {
    const n = sizes[i % sizes.length];
    f.push(stream.subarray(p, p + n));
    p += n;
  }
  return { frames: out, uids, rejects };
}

describe('scan core (WebAssembly)', () => {
  it('a chunk ending at every offset inside a 16-byte block gives the same frames and headers', () => {
    // values and names of every length around 16 and 32, so chunk ends fall inside SIMD loads
    const evs: string[] = [];
    for (let len = 1; len <= 40; len++) {
      const v = 'v'.repeat(len);
      evs.push(`<event uid="u${len}" type="a-f-G" ${'n'.repeat(len)}="${v}"><detail><contact callsign='${v}'/></detail></event>\n`);
    }
    const stream = Buffer.from(evs.join(''));
    const whole = frames(stream, [stream.length]);
    assert.equal(whole.frames.length, 40);
    assert.deepEqual(whole.rejects, []);
    for (let size = 1; size <= 48; size++) {
      const got = frames(stream, [size, 16 + size, 3]);
      assert.deepEqual(got.frames, whole.frames, `chunks of ${size}`);
      assert.deepEqual(got.uids, whole.uids, `chunks of ${size}`);
    }
  });

  it('bytes left in core memory by an earlier, longer scan never complete a truncated frame', () => {
    // the first scan leaves `" type="b"/>` right after where the second frame ends
    const long = Buffer.from('<event uid="aaaa" type="b"/>');
    assert.ok(scan(long).ok);
    for (const cut of ['<event uid="aa', '<event uid="aaaa', '<event uid="aaaa" type="b"', '<event uid="aaaa" type="b"/']) {
      const r = scan(Buffer.from(cut));
      assert.equal(r.ok, false, cut);
    }
    // same through the framer: the stream ends inside the frame, nothing is delivered
    const f = frames(Buffer.concat([long, long.subarray(0, 20)]), [1000]);
    assert.equal(f.frames.length, 1);
  });

  it('a frame larger than the core memory grows it; memory stays usable afterwards', () => {
    // larger than the core memory as it is now (earlier tests may have grown it already)
    const before = core.memory.buffer.byteLength;
    const inner = '<a b="c"/>'.repeat(Math.ceil((before + (1 << 20)) / 10));
    const big = Buffer.from(`<event uid="big" type="a-f-G"><detail>${inner}<contact callsign="far"/></detail></event>`);
    const h = scan(big) as CotHeader;
    assert.ok(h.ok);
    assert.equal(h.callsign, 'far');
    assert.ok(core.memory.buffer.byteLength > before);
    // deep nesting and many dests grow the core's stack and dest list in its scratch area
    const depth = 20000;
    const deep = Buffer.from(`<event uid="d" type="a"><detail><marti>${'<dest uid="x"/>'.repeat(5000)}</marti>${'<x>'.repeat(depth)}${'</x>'.repeat(depth)}</detail></event>`);
    const d = scan(deep) as CotHeader;
    assert.ok(d.ok);
    assert.equal(d.dests.length, 5000);
    assert.equal(d.dests[4999].uid, 'x');
    const sa = scan(SA) as CotHeader;
    assert.ok(sa.ok && sa.uid === 'ANDROID-aabbcc5577' && sa.callsign === 'cs');
    // the framer delivers the big frame too (reassembled across chunks, then one scan)
    const got = frames(Buffer.concat([big, Buffer.from('\n'), SA]), [4096], big.length + 1024);
    assert.deepEqual(got.uids, ['big', 'ANDROID-aabbcc5577']);
  });

  it('frames whose copy ends right at, or just past, the end of the core memory', () => {
    // place() keeps 64 KiB + 64 bytes after the data; sizes around that edge need no growth,
    // exactly one page, or one more
    for (const delta of [-17, -16, -1, 0, 1, 16, 17]) {
      const room = core.memory.buffer.byteLength - top - 64 - 65536;
      const pad = room + delta - '<event uid="edge" type="a" v=""/>'.length;
      const frame = Buffer.from(`<event uid="edge" type="a" v="${'x'.repeat(Math.max(0, pad))}"/>`);
      const h = scan(frame);
      assert.ok(h.ok && h.uid === 'edge', `delta ${delta}`);
      // the same frame cut one byte short is refused, whatever lies beyond it in memory
      assert.equal(scan(frame.subarray(0, frame.length - 1)).ok, false, `delta ${delta}, cut`);
    }
  });

  it('a sink that scans other buffers (and pushes into another framer) does not disturb the chunk being framed', () => {
    const stream = Buffer.concat([SA, SA, SA]);
    const inner: string[] = [];
    const other = new Framer({ frame: (b) => { const h = scan(b); inner.push(h.ok ? h.uid : h.reason); }, reject: () => {} });
    const uids: string[] = [];
    const f = new Framer({
      frame: (b) => {
        const h = scan(b);
        uids.push(h.ok ? h.uid : h.reason);
        // a different frame scanned and framed in the middle
        const x = scan(Buffer.from('<event uid="other" type="a-f-G"><detail><contact callsign="o"/></detail></event>'));
        inner.push(x.ok ? x.uid : x.reason);
        other.push(Buffer.from('<event uid="pushed" type="a"/>'));
      },
      reject: () => {},
    });
    const t0 = top;
    f.push(stream);
    assert.equal(top, t0, 'the chunk copy is released');
    assert.deepEqual(uids, ['ANDROID-aabbcc5577', 'ANDROID-aabbcc5577', 'ANDROID-aabbcc5577']);
    assert.deepEqual(inner, ['other', 'pushed', 'other', 'pushed', 'other', 'pushed']);
  });

  it('a sink that throws releases the chunk copy', () => {
    const f = new Framer({ frame: () => { throw new Error('sink'); }, reject: () => {} });
    const t0 = top;
    assert.throws(() => f.push(SA), /sink/);
    assert.equal(top, t0);
    assert.ok(scan(SA).ok);
  });

  it('elements with many attributes: duplicates found through the hash table, in any position', () => {
    const names = Array.from({ length: 300 }, (_, i) => `a${i}`);
    const attrs = (ns: string[]) => ns.map((n) => `${n}="1"`).join(' ');
    assert.ok(scan(Buffer.from(`<event uid="u" type="t"><x ${attrs(names)}/></event>`)).ok);
    for (const dup of [1, 8, 9, 150, 299]) {
      const ns = [...names, names[dup]];
      const r = scan(Buffer.from(`<event uid="u" type="t"><x ${attrs(ns)}/></event>`));
      assert.ok(!r.ok && r.reason === ScanReason.attrDuplicate, `duplicate of #${dup}`);
    }
    // names that differ only past the first 16 bytes, and long equal prefixes
    const long = Array.from({ length: 20 }, (_, i) => `${'p'.repeat(40)}${i}`);
    assert.ok(scan(Buffer.from(`<event uid="u" type="t" ${attrs(long)}/>`)).ok);
    const r = scan(Buffer.from(`<event uid="u" type="t" ${attrs([...long, long[3]])}/>`));
    assert.ok(!r.ok && r.reason === ScanReason.attrDuplicate);
  });

  it('lazy fields are found again in their tag whatever surrounds them (values naming other attributes, quotes, white space)', () => {
    const xml = `<?xml version="1.0"?>\n<event uid='x how="bad" time="bad"' how\n = 'h-e' type="a" time = "T" stale="2020-08-19T08:07:47.157Z"
      version="2.0" start='S "q"'><point le="5" ce="4" lat="1" hae='3' lon="2"/><point lat="9" lon="9" hae="9" ce="9" le="9"/>
      <detail><x name="no"/><__group  role='R' name="N"/><__group name="second" role="second"/></detail></event>`;
    const h = scan(Buffer.from(xml)) as CotHeader;
    assert.ok(h.ok);
    assert.equal(h.uid, 'x how="bad" time="bad"');
    assert.equal(h.how, 'h-e');
    assert.equal(h.time, 'T');
    assert.equal(h.start, 'S "q"');
    assert.equal(h.stale, '2020-08-19T08:07:47.157Z');
    assert.equal(h.version, '2.0');
    assert.deepEqual(h.point, { lat: 1, lon: 2, hae: 3, ce: 4, le: 5 });
    assert.equal(h.groupName, 'N');
    assert.equal(h.groupRole, 'R');
    // absent ones stay absent, read twice
    const g = scan(Buffer.from('<event uid="u" type="t"><point lat="1"/><detail/></event>')) as CotHeader;
    assert.equal(g.how, undefined);
    assert.equal(g.how, undefined);
    assert.equal(g.groupName, undefined);
    assert.ok(Number.isNaN(g.point!.lon) && g.point!.lat === 1);
    // a lazy field that needs decoding makes them all at once, from the bytes
    const d = scan(Buffer.from('<event uid="u" type="t" how="h&amp;e" time="\u00e9"><point lat="1" lon="2" hae="3" ce="4" le="5"/></event>')) as CotHeader;
    assert.equal(d.how, 'h&e');
    assert.equal(d.time, '\u00e9');
    assert.deepEqual(d.point, { lat: 1, lon: 2, hae: 3, ce: 4, le: 5 });
  });

  it('a single-quoted value may hold " and a double-quoted one \' (the other quote is content)', () => {
    const h = scan(Buffer.from(`<event uid='a"b' type="c'd"><detail><contact callsign="${'x'.repeat(20)}'${'y'.repeat(20)}"/></detail></event>`)) as CotHeader;
    assert.ok(h.ok);
    assert.equal(h.uid, 'a"b');
    assert.equal(h.type, "c'd");
    assert.equal(h.callsign, `${'x'.repeat(20)}'${'y'.repeat(20)}`);
  });

  it('interned strings: many distinct values (more than the table holds), repeats, values that decode, and a header kept while its slot is reused', () => {
    const mk = (i: number, cs: string) => `<event uid="U-${i}" type="a-f-${i % 7}"><detail><contact callsign="${cs}" endpoint="*:-1:stcp"/><link uid="L${i % 3}"/></detail></event>`;
    const want = (i: number, cs: string) => ({ uid: `U-${i}`, type: `a-f-${i % 7}`, callsign: cs.replace('&amp;', '&'), endpoint: '*:-1:stcp', linkUid: `L${i % 3}` });
    const got = (h: CotHeader) => ({ uid: h.uid, type: h.type, callsign: h.callsign, endpoint: h.endpoint, linkUid: h.linkUid });
    const kept = scan(Buffer.from(mk(0, 'first'))) as CotHeader;
    const long = 'l'.repeat(200); // too long to intern
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5000; i += round + 1) {
        const cs = i % 5 === 0 ? 'A&amp;B' : i % 5 === 1 ? 'Zoë' : i % 5 === 2 ? long : `cs${i % 50}`;
        const h = scan(Buffer.from(mk(i, cs))) as CotHeader;
        assert.deepEqual(got(h), want(i, cs), `round ${round}, event ${i}`);
      }
    }
    assert.deepEqual(got(kept), want(0, 'first'));
    // a frame rejected after its fields were read leaves nothing behind
    const bad = scan(Buffer.from(`${mk(7, 'bad')}<x/>`));
    assert.ok(!bad.ok);
    assert.deepEqual(got(scan(Buffer.from(mk(7, 'good'))) as CotHeader), want(7, 'good'));
    // the framer's fast path goes through the same table
    const stream = Buffer.from(Array.from({ length: 40 }, (_, i) => mk(i % 13, `c${i % 4}`)).join('\n'));
    const hs: CotHeader[] = [];
    new Framer({ frame: (b) => hs.push(scan(b) as CotHeader), reject: () => {} }).push(stream);
    assert.equal(hs.length, 40);
    hs.forEach((h, i) => assert.deepEqual(got(h), want(i % 13, `c${i % 4}`)));
  });

  it("lazy fields of the framer's frames stay right after the chunk Buffer is refilled and pushed again", () => {
    const mk = (k: string) => `<?xml version="1.0"?>\n<event uid="u" type="a" how="${k}" time="T${k}"><point lat="1" lon="2" hae="3" ce="4" le="${k.length}"/>` +
      `<detail><__group name="G${k}" role="R${k}"/></detail></event>\n`;
    const a = Buffer.from(mk('one') + mk('two') + mk('six'));
    const b = Buffer.from(mk('ten') + mk('abc') + mk('xyz'));
    assert.equal(a.length, b.length);
    const chunk = Buffer.from(a);
    const hs: CotHeader[] = [];
    const f = new Framer({ frame: (x) => hs.push(scan(x) as CotHeader), reject: () => {} });
    f.push(chunk);
    chunk.set(b); // the same Buffer object, refilled (as a socket's read buffer can be)
    f.push(chunk);
    chunk.fill(0x20);
    assert.deepEqual(hs.map((h) => [h.how, h.time, h.groupName, h.groupRole, h.point!.le]),
      ['one', 'two', 'six', 'ten', 'abc', 'xyz'].map((k) => [k, `T${k}`, `G${k}`, `R${k}`, 3]));
  });

  it('a frame cut by the chunk end, finished by the core across the two: same frames, verdicts, headers and counters as unsplit', () => {
    // well-formed events, ones that turn out malformed after the cut (end tag, attribute,
    // reference, nested event), an oversize one, junk, a self-closing root
    const parts = [
      '<?xml version="1.0"?>\n', SA.toString(), '<event uid="a" type="t"><detail><x y="1"/></detail></event>\n',
      '<event uid="b" type="t"><detail></detal></event>\n', '<event uid="c" type="t"><point lat="1" lat="2"/></event>',
      '<event uid="d" type="t" how="&bad;"/>', '<event uid="e" type="t"><event uid="n" type="t"></event></event>\n',
      `<event uid="big" type="t"><x v="${'v'.repeat(1000)}"/></event>\n`, 'junk<event uid="f" type="t"/>\n', SA.toString(),
    ];
    const stream = Buffer.from(parts.join(''));
    const max = 1000;
    let ends: number[] = []; // where the frames of the unsplit stream end
    const run = (cuts: number[]) => {
      const got: string[] = [];
      const seen: number[] = [];
      const f: Framer = new Framer({
        frame: (b) => {
          const upTo = f.framedBytes + f.ignoredBytes + f.skippedBytes;
          assert.ok(stream.subarray(upTo - b.length, upTo).equals(b), 'counters cover the stream up to this frame');
          seen.push(upTo);
          const h = scan(b);
          got.push(`${b.toString()} => ${h.ok ? `${h.uid} ${h.callsign} ${h.how} ${h.groupName} ${JSON.stringify(h.point)}` : h.reason}`);
        },
        reject: (r, d) => got.push(`reject ${r} ${d}`),
      }, max);
      let p = 0;
      for (const c of [...cuts, stream.length]) {
        f.push(stream.subarray(p, c));
        p = c;
        // every frame complete in what was pushed is delivered by the push that completes it
        if (cuts.length > 0) assert.equal(seen.length, ends.filter((e) => e <= c).length, `frames delivered by the push ending at ${c}`);
      }
      if (cuts.length === 0) ends = seen;
      got.push(`${f.framedBytes} ${f.ignoredBytes} ${f.skippedBytes} ${f.buffered}`);
      return got;
    };
    const whole = run([]);
    assert.ok(whole.some((x) => x.includes(ScanReason.endTag)) && whole.some((x) => x.startsWith('reject oversize')));
    for (let c = 1; c < stream.length; c++) assert.deepEqual(run([c]), whole, `cut at ${c}`);
    for (let c = 1; c + 20 < stream.length; c += 3) assert.deepEqual(run([c, c + 1, c + 20]), whole, `cuts at ${c}, +1, +20`);
  });

  it('lazily read values: records of many frames (more than the staging area holds), read in any order, during and after the push', () => {
    const mk = (i: number) => `<event uid="u${i}" type="a" how="h${i}" time="T${i}" version="${i % 3 === 0 ? '' : 'v'}"><point lat="${i}" lon="-${i}.5" hae="${i}e1" le=""/>` +
      `<detail><__group name="N${i}"/></detail></event>`;
    const check = (h: CotHeader, i: number) => {
      assert.deepEqual([h.how, h.time, h.start, h.stale, h.version, h.groupName, h.groupRole], [`h${i}`, `T${i}`, undefined, undefined, i % 3 === 0 ? '' : 'v', `N${i}`, undefined]);
      assert.deepEqual(h.point, { lat: i, lon: -i - 0.5, hae: i * 10, ce: NaN, le: NaN });
    };
    // standalone scans, never sealed by a framer: the area fills and seals batches by itself
    const kept = Array.from({ length: 1500 }, (_, i) => { const b = Buffer.from(mk(i)); const h = scan(b) as CotHeader; b.fill(0x20); return h; });
    for (let i = kept.length - 1; i >= 0; i -= 7) check(kept[i], i);
    kept.forEach(check);
    // a sink that reads some headers' lazy values while the chunk is being framed
    const hs: CotHeader[] = [];
    const f = new Framer({ frame: (b) => { const h = scan(b) as CotHeader; hs.push(h); if (hs.length % 5 === 0) check(h, hs.length - 1); }, reject: () => {} });
    const chunk = Buffer.from(Array.from({ length: 50 }, (_, i) => mk(i)).join('\n'));
    f.push(chunk);
    chunk.fill(0x20);
    hs.forEach(check);
    // without a point or a group, and a frame with no lazy value at all
    const bare = scan(Buffer.from('<event uid="u" type="t"><detail><__group role="R"/></detail></event>')) as CotHeader;
    assert.deepEqual([bare.how, bare.point, bare.groupName, bare.groupRole], [undefined, undefined, undefined, 'R']);
  });

  it('duplicates of the attributes the header reads are found in every element that has them, among few or many others', () => {
    const many = Array.from({ length: 12 }, (_, i) => `x${i}="1"`).join(' ');
    const cases: [string, string][] = [
      ['event', '<event uid="u" type="t" A uid="v"/>'], ['event', '<event uid="u" type="t" A stale="s" stale="s"/>'],
      ['point', '<event uid="u" type="t"><point lat="1" A lat="2"/></event>'], ['point', '<event uid="u" type="t"><point le="1" A le="1"/></event>'],
      ['contact', '<event uid="u" type="t"><detail><contact A callsign="a" callsign="b"/></detail></event>'],
      ['__group', '<event uid="u" type="t"><detail><__group role="r" A role="r"/></detail></event>'],
      ['link', '<event uid="u" type="t"><detail><link uid="a" A uid="b"/></detail></event>'],
      ['dest', '<event uid="u" type="t"><detail><marti><dest uid="a"/><dest callsign="c" A callsign="c"/></marti></detail></event>'],
    ];
    for (const [what, xml] of cases) {
      for (const a of ['', many]) {
        const r = scan(Buffer.from(xml.replace(' A ', ` ${a} `.replace('  ', ' '))));
        assert.ok(!r.ok && r.reason === ScanReason.attrDuplicate, `${what}${a ? ' among many' : ''}: ${xml}`);
      }
    }
    // the same names in different elements (a second point, contact, group, link, another dest) are fine
    const h = scan(Buffer.from(`<event uid="u" type="t" ${many}><point lat="1"/><point lat="2"/><detail><contact callsign="a"/><contact callsign="b"/>` +
      '<__group name="g"/><__group name="h"/><link uid="l"/><link uid="m"/><marti><dest uid="a"/><dest uid="a"/></marti></detail></event>')) as CotHeader;
    assert.ok(h.ok);
    assert.deepEqual([h.point!.lat, h.callsign, h.groupName, h.linkUid, h.dests], [1, 'a', 'g', 'l', [{ uid: 'a' }, { uid: 'a' }]]);
  });

  it('attributes read off the vectors: names and values of every length and content around the 16-byte blocks', () => {
    for (let nlen = 1; nlen <= 20; nlen++) {
      const name = 'n'.repeat(nlen);
      for (let vlen = 0; vlen <= 34; vlen++) {
        for (const [raw, want] of [['v', 'v'], ['&amp;', '&'], ['\u00e9', '\u00e9'], ['\t', ' '], ['\'', "'"]]) {
          const at = vlen >> 1;
          const value = 'v'.repeat(at) + raw + 'v'.repeat(vlen - at);
          const expect = 'v'.repeat(at) + want + 'v'.repeat(vlen - at);
          for (const pad of ['', ' ', '  ']) {
            const xml = `<event ${name}="${value}" uid="${value}" type="t"><detail><contact ${name}="1" callsign${pad}=${pad}"${value}"/></detail></event>`;
            const h = scan(Buffer.from(xml));
            assert.ok(h.ok, `${xml}: ${JSON.stringify(h)}`);
            assert.equal(h.uid, expect, xml);
            assert.equal(h.callsign, expect, xml);
          }
        }
        // the same, broken: '<' in the value, a control character, no closing quote before the end
        const v = 'v'.repeat(vlen);
        const bad = (x: string) => scan(Buffer.from(x)) as { ok: boolean; reason?: string };
        assert.equal(bad(`<event ${name}="${v}<" uid="u" type="t"/>`).reason, ScanReason.attrLt);
        assert.equal(bad(`<event ${name}="${v}\u0001" uid="u" type="t"/>`).reason, ScanReason.char);
        assert.equal(bad(`<event uid="u" type="t" ${name}="${v}`).reason, ScanReason.attrUnterminated);
        assert.equal(bad(`<event uid="u" type="t" ${name}="${v}"${name}="x"/>`).reason, ScanReason.attrSpace);
        assert.equal(bad(`<event uid="u" type="t" ${name}=${v}/>`).reason, ScanReason.attrQuote);
        assert.equal(bad(`<event uid="u" type="t" ${name}\u00e9x="1" ${name}\u00e9x="2"/>`).reason, ScanReason.attrDuplicate);
      }
    }
  });

  it('the frames of the fast path are Buffers: views of the chunk with every Buffer method', () => {
    const chunk = Buffer.concat([SA, SA]);
    const got: Buffer[] = [];
    new Framer({ frame: (b) => { got.push(b); assert.ok(scan(b).ok); }, reject: () => assert.fail() }).push(chunk);
    assert.equal(got.length, 2);
    for (const f of got) {
      assert.ok(Buffer.isBuffer(f) && f instanceof Buffer && f instanceof Uint8Array);
      assert.equal(f.buffer, chunk.buffer, 'a view, not a copy');
      assert.ok(f.toString('latin1').startsWith('<event') && f.toString().endsWith('</event>'));
      assert.equal(f.indexOf('<point'), f.toString().indexOf('<point'));
      assert.ok(Buffer.concat([f, f.subarray(0, 6)]).subarray(-6).equals(Buffer.from('<event')));
      assert.ok(Buffer.isBuffer(f.subarray(1)) && Buffer.isBuffer(f.slice(1)));
      assert.equal(f.readUInt8(0), 0x3c);
      assert.deepEqual(Buffer.from(f), Buffer.from(f.toString()));
    }
  });
});
