// The Redis bus wire format: round trips, and corrupt input that must throw CodecError only.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BatchType, CodecError, decodeBatch, decodeHeader, encodeBatch, envelopeSize, headerSize } from '../../src/bus/codec.ts';
import { EnvelopeKind, type Envelope } from '../../src/bus/types.ts';

const env = (over: Partial<Envelope> = {}): Envelope => ({
  kind: EnvelopeKind.event, node: 'node-a', session: 7, seq: 42, uid: 'ANDROID-1', type: 'a-f-G-U-C',
  staleMs: 1_800_000_000_000, callsigns: null, uids: null, frame: Buffer.from('<event uid="x"/>'), t0: 0, owner: undefined, ...over,
});

/** What survives the wire: everything but t0 (local to the origin node). */
const wire = (e: Envelope) => ({ ...e, frame: Buffer.from(e.frame).toString('base64'), t0: 0 });

describe('bus codec', () => {
  it('round-trips every kind, broadcast and directed, empty and unicode strings', () => {
    const envs = [
      env(),
      env({ kind: EnvelopeKind.sa, staleMs: NaN, seq: 2 ** 40 + 3 }),
      env({ kind: EnvelopeKind.gone, uid: '', type: '', frame: Buffer.alloc(0) }),
      env({ kind: EnvelopeKind.replay, session: 0xffffffff }),
      env({ kind: EnvelopeKind.sa, owner: '4e8595de5446ee230d0e3598dbc8ff21' }),
      env({ kind: EnvelopeKind.replay, owner: '1', callsigns: ['C'], uids: ['u'] }),
      env({ callsigns: ['BRAVO', 'Ωmega ✓'], uids: null }),
      env({ callsigns: null, uids: ['u1', 'u2', 'u3'] }),
      env({ callsigns: [], uids: [''] }),
      env({ frame: Buffer.alloc(300_000, 0x41) }),
    ];
    const h = { type: BatchType.events, node: 'node-ä', epoch: 0xdeadbeef, seq: 99 };
    const buf = encodeBatch(h, envs);
    assert.equal(buf.length, headerSize(Buffer.byteLength('node-ä')) + envs.reduce((n, e) => n + envelopeSize(e), 0));
    const b = decodeBatch(buf, 0);
    assert.deepEqual({ type: b.type, node: b.node, epoch: b.epoch, seq: b.seq }, h);
    assert.equal(b.envelopes.length, envs.length);
    for (let i = 0; i < envs.length; i++) assert.deepEqual(wire(b.envelopes[i]), wire({ ...envs[i], node: 'node-ä' }), `envelope ${i}`);
    // a directed envelope stays directed, a broadcast one stays broadcast (null, not [])
    assert.equal(b.envelopes[0].callsigns, null);
    assert.deepEqual(b.envelopes[8].callsigns, []);
  });

  it('frames are views into the batch (no copy on receive)', () => {
    const buf = encodeBatch({ type: BatchType.events, node: 'n', epoch: 1, seq: 1 }, [env()]);
    const f = decodeBatch(buf).envelopes[0].frame;
    assert.equal(f.buffer, buf.buffer);
  });

  it('header-only batches: sync and heartbeat', () => {
    for (const type of [BatchType.sync, BatchType.heartbeat]) {
      const buf = encodeBatch({ type, node: 'n1', epoch: 5, seq: 6 }, []);
      assert.equal(buf.length, headerSize(2));
      const h = decodeHeader(buf);
      assert.equal(h.type, type);
      assert.equal(h.count, 0);
      assert.equal(decodeBatch(buf).envelopes.length, 0);
    }
  });

  it('every truncation of a valid batch throws CodecError', () => {
    const buf = encodeBatch({ type: BatchType.events, node: 'node-a', epoch: 1, seq: 1 }, [env({ callsigns: ['A'], uids: ['b'] }), env()]);
    for (let n = 0; n < buf.length; n++) {
      assert.throws(() => decodeBatch(buf.subarray(0, n)), CodecError, `prefix of ${n} bytes`);
    }
    assert.throws(() => decodeBatch(Buffer.concat([buf, Buffer.from([0])])), CodecError, 'trailing byte');
  });

  it('reads version 1 batches (before the owner field): a node understands older nodes', () => {
    const e = env({ kind: EnvelopeKind.sa, callsigns: ['A'] });
    const buf = encodeBatch({ type: BatchType.events, node: 'old', epoch: 1, seq: 5 }, [e]);
    buf[0] = 1; // without an owner the layout is version 1's
    const b = decodeBatch(buf);
    assert.deepEqual(wire(b.envelopes[0]), wire({ ...e, node: 'old' }));
    assert.equal(b.envelopes[0].owner, undefined);
  });

  it('rejects unknown versions, batch types and kinds', () => {
    const buf = encodeBatch({ type: BatchType.events, node: 'n', epoch: 1, seq: 1 }, [env()]);
    const v = Buffer.from(buf); v[0] = 9;
    assert.throws(() => decodeHeader(v), /version/);
    const t = Buffer.from(buf); t[1] = 7;
    assert.throws(() => decodeHeader(t), /batch type/);
    const k = Buffer.from(buf); k[headerSize(1)] = 200;
    assert.throws(() => decodeBatch(k), /kind/);
  });

  it('a lying envelope count is refused before allocating for it', () => {
    const buf = encodeBatch({ type: BatchType.events, node: 'n', epoch: 1, seq: 1 }, [env()]);
    buf.writeUInt32LE(0xffffffff, headerSize(1) - 4);
    assert.throws(() => decodeBatch(buf), /count/);
  });

  it('property: any envelopes round-trip; any bytes decode or throw CodecError', () => {
    const str = fc.string({ maxLength: 40 });
    const arbEnv = fc.record({
      kind: fc.constantFrom(...Object.values(EnvelopeKind)),
      session: fc.nat({ max: 0xffffffff }),
      seq: fc.nat(),
      uid: str,
      type: str,
      staleMs: fc.oneof(fc.constant(NaN), fc.double({ noNaN: true })),
      callsigns: fc.option(fc.array(str, { maxLength: 5 }), { nil: null }),
      uids: fc.option(fc.array(str, { maxLength: 5 }), { nil: null }),
      frame: fc.uint8Array({ maxLength: 200 }),
      owner: fc.option(fc.string({ minLength: 1, maxLength: 40 }), { nil: undefined }),
    });
    fc.assert(fc.property(fc.array(arbEnv, { maxLength: 8 }), fc.string({ minLength: 1, maxLength: 30 }), (list, node) => {
      const envs: Envelope[] = list.map((e) => ({ ...e, node, frame: Buffer.from(e.frame), t0: 0 }));
      const b = decodeBatch(encodeBatch({ type: BatchType.events, node, epoch: 3, seq: 4 }, envs));
      assert.deepEqual(b.envelopes.map(wire), envs.map(wire));
    }));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try { decodeBatch(Buffer.from(bytes)); } catch (err) { assert.ok(err instanceof CodecError, String(err)); }
    }));
  });
});

describe('bus codec limits', () => {
  it('an envelope with a string over 64 KiB has no size and is refused by the encoder', () => {
    const big = env({ uid: 'u'.repeat(70_000) });
    assert.ok(Number.isNaN(envelopeSize(big)));
    assert.ok(Number.isNaN(envelopeSize(env({ callsigns: ['c'.repeat(65_536)] }))));
    assert.throws(() => encodeBatch({ type: BatchType.events, node: 'n', epoch: 1, seq: 1 }, [big]), CodecError);
    assert.ok(envelopeSize(env({ uid: 'u'.repeat(65_535) })) > 65_535);
  });
});
