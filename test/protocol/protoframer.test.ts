import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtoFramer } from '../../protocol/protoframer.ts';
import type { FrameRejectReason } from '../../protocol/framer.ts';
import { encodeStreamMessage, encodeTakMessage } from '../../protocol/takproto.ts';
import { loadSamples } from '../helpers/samples.ts';
import { normCot } from '../helpers/cotnorm.ts';

const xmls = [...loadSamples()].map(([, b]) => b.toString('utf8').replaceAll("'TIME'", "'2024-05-06T07:08:09.123Z'"));
const stream = (x: string) => encodeStreamMessage(Buffer.from(x))!;

class Collect {
  frames: string[] = [];
  rejects: Array<[FrameRejectReason, string]> = [];
  frame(f: Buffer): void { this.frames.push(f.toString('utf8')); }
  reject(r: FrameRejectReason, d: string): void { this.rejects.push([r, d]); }
}

function run(chunks: Buffer[], max = 1 << 20): { c: Collect; f: ProtoFramer; total: number } {
  const c = new Collect();
  const f = new ProtoFramer(c, max);
  let total = 0;
  for (const ch of chunks) { f.push(ch); total += ch.length; }
  return { c, f, total };
}

function accounted(f: ProtoFramer, total: number): void {
  assert.equal(f.framedBytes + f.ignoredBytes + f.skippedBytes + f.buffered, total);
}

/** 0xBF + varint(len) + body */
function framed(body: Buffer): Buffer {
  const h = [0xbf];
  let v = body.length;
  while (v >= 0x80) { h.push((v & 0x7f) | 0x80); v >>>= 7; }
  h.push(v);
  return Buffer.concat([Buffer.from(h), body]);
}

describe('ProtoFramer (TAK Protocol v1 streaming)', () => {
  const all = Buffer.concat(xmls.map(stream));

  it('decodes back-to-back messages to the XML frames, whatever the chunking', () => {
    const whole = run([all]);
    assert.equal(whole.c.frames.length, xmls.length);
    whole.c.frames.forEach((f, i) => assert.deepEqual(normCot(f), normCot(xmls[i])));
    assert.deepEqual(whole.c.rejects, []);
    accounted(whole.f, whole.total);
    // every split point of a two-message stream, and one byte at a time
    const two = Buffer.concat([stream(xmls[0]), stream(xmls[2])]);
    for (let i = 0; i <= two.length; i++) {
      const r = run([two.subarray(0, i), two.subarray(i)]);
      assert.deepEqual(r.c.frames, run([two]).c.frames, `split at ${i}`);
      accounted(r.f, r.total);
    }
    const bytes = run([...all].map((x) => Buffer.from([x])));
    assert.deepEqual(bytes.c.frames, whole.c.frames);
    accounted(bytes.f, bytes.total);
  });

  it('random chunkings give the same frames', () => {
    const expected = run([all]).c.frames;
    fc.assert(fc.property(fc.array(fc.nat({ max: all.length }), { maxLength: 20 }), (cuts) => {
      const pts = [...new Set([0, ...cuts, all.length])].sort((a, b) => a - b);
      const chunks = pts.slice(1).map((e, i) => all.subarray(pts[i], e));
      const r = run(chunks);
      assert.deepEqual(r.c.frames, expected);
      accounted(r.f, r.total);
    }), { numRuns: 200 });
  });

  it('skips a message over the frame limit and reads the next one', () => {
    const big = framed(encodeTakMessage(Buffer.from(`<event uid="u" type="t"><point lat="1" lon="2"/><detail><remarks>${'x'.repeat(3000)}</remarks></detail></event>`)));
    const s = Buffer.concat([big, stream(xmls[0])]);
    for (const chunks of [[s], [s.subarray(0, 10), s.subarray(10, 2000), s.subarray(2000)]]) {
      const r = run(chunks, 1024);
      assert.equal(r.c.rejects.length, 1);
      assert.equal(r.c.rejects[0][0], 'oversize');
      assert.equal(r.c.frames.length, 1);
      assert.equal(r.f.fatal, null);
      accounted(r.f, r.total);
    }
  });

  it('a length no message could have is lost framing (fatal), not megabytes to skip', () => {
    // 2^62 declared: skipped as "oversize", everything the client sent after it would vanish unseen
    const huge = Buffer.from([0xbf, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    for (const len of [64 * 1024 * 1024 + 1, 2 ** 62]) {
      const head = len === 2 ** 62 ? huge : framed(Buffer.alloc(len)).subarray(0, 5);
      const r = run([head, stream(xmls[0])], 1024);
      assert.deepEqual(r.c.rejects.map((x) => x[0]), ['malformed'], String(len));
      assert.match(r.f.fatal!, /framing lost/);
      assert.equal(r.c.frames.length, 0);
      accounted(r.f, r.total);
    }
    // up to 64 MiB (or 16 times the limit, when that is more) it is an oversize message, skipped,
    // and the next one is read: a 20-KB route with --max-frame-bytes 1024 must not close its sender
    for (const [len, max] of [[20_000, 1024], [64 * 1024 * 1024, 1024], [16 * 1024 * 1024, 1024 * 1024]]) {
      const r = run([framed(Buffer.alloc(len)), stream(xmls[0])], max);
      assert.deepEqual(r.c.rejects.map((x) => x[0]), ['oversize'], `${len} over ${max}`);
      assert.equal(r.f.fatal, null);
      assert.equal(r.c.frames.length, 1);
    }
  });

  it('drops an undecodable message (counted malformed) and reads the next one', () => {
    const s = Buffer.concat([framed(Buffer.from([0x12, 0x05, 0x0a])), stream(xmls[0])]);
    const r = run([s]);
    assert.deepEqual(r.c.rejects.map((x) => x[0]), ['malformed']);
    assert.match(r.c.rejects[0][1], /undecodable TAK message/);
    assert.equal(r.c.frames.length, 1);
    accounted(r.f, r.total);
  });

  it('a TakControl-only or empty message produces no frame and no error', () => {
    const r = run([Buffer.concat([framed(Buffer.from([0x0a, 0x02, 0x08, 0x01])), framed(Buffer.alloc(0)), stream(xmls[0])])]);
    assert.equal(r.c.frames.length, 1);
    assert.deepEqual(r.c.rejects, []);
    assert.equal(r.f.ignoredBytes, 6 + 2);
    accounted(r.f, r.total);
  });

  it('no magic byte: fatal, counted malformed once, nothing after it is read', () => {
    for (const bad of [Buffer.from('<event uid="u" type="t"/>'), Buffer.concat([stream(xmls[0]), Buffer.from([0x00]), stream(xmls[0])])]) {
      const r = run([bad, stream(xmls[0])]);
      assert.equal(r.c.rejects.length, 1);
      assert.equal(r.c.rejects[0][0], 'malformed');
      assert.match(r.f.fatal!, /0xBF/);
      assert.ok(r.c.frames.length <= 1);
      accounted(r.f, r.total);
    }
    // white space is only XML's before the first message
    const ws = run([Buffer.from(' \r\n'), stream(xmls[0]), Buffer.from('\n'), stream(xmls[0])]);
    assert.equal(ws.c.frames.length, 1);
    assert.equal(ws.f.ignoredBytes, 3);
    assert.match(ws.f.fatal!, /0x0a/);
    accounted(ws.f, ws.total);
    const long = run([Buffer.from([0xbf, ...Array(12).fill(0xff)])]);
    assert.match(long.f.fatal!, /varint/);
    accounted(long.f, long.total);
  });
});
