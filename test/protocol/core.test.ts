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

  it('a single-quoted value may hold " and a double-quoted one \' (the other quote is content)', () => {
    const h = scan(Buffer.from(`<event uid='a"b' type="c'd"><detail><contact callsign="${'x'.repeat(20)}'${'y'.repeat(20)}"/></detail></event>`)) as CotHeader;
    assert.ok(h.ok);
    assert.equal(h.uid, 'a"b');
    assert.equal(h.type, "c'd");
    assert.equal(h.callsign, `${'x'.repeat(20)}'${'y'.repeat(20)}`);
  });
});
