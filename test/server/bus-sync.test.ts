// The framing of a sync answer on the Redis bus, and what a receiving node makes of it: the real
// RedisBus receive path and the real Router, fed the batches another node would publish (encoded
// by the real codec). Only a complete answer — its start and end marks seen, no gap between — may
// prune that node's cached SAs; the end-to-end outages are in test/e2e/redis.test.ts. And what of a
// received batch stays in memory after it is delivered.
import assert from 'node:assert/strict';
import { BatchType, markOf, decodeHeader, encodeMark, encodeBatch, type Mark } from '../../src/bus/codec.ts';
import { RedisBus } from '../../src/bus/redis.ts';
import { EnvelopeKind, type Envelope } from '../../src/bus/types.ts';
import { Router } from '../../src/router.ts';
import { FlushScheduler } from '../../src/session.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { createLogger } from '../../src/ops/log.ts';

const PEER = 'node-x';
const EPOCH = 7;

function saEnv(uid: string, kind: EnvelopeKind = EnvelopeKind.sa): Envelope {
  return {
    kind, node: PEER, session: 1, seq: 0, uid, type: 'a-f-G-U-C', staleMs: Date.now() + 3_600_000, callsigns: null, uids: null,
    frame: Buffer.from(`<event uid="${uid}" type="a-f-G-U-C"/>`), t0: 0, owner: 'abc',
  };
}

/** A receiving node: the bus is never connected (lazyConnect), its receive path is fed directly. */
function receiver() {
  const metrics = new Metrics({ defaultMetrics: false });
  const log = createLogger('silent');
  const bus = new RedisBus({ url: 'redis://127.0.0.1:1', nodeId: 'node-me', metrics, log });
  const router = new Router(bus, new FlushScheduler(metrics), metrics, log, { announce: false });
  const b = bus as unknown as { deliver: unknown; host: unknown; onMessage(ch: Buffer, msg: Buffer): void };
  b.deliver = router.deliver;
  b.host = router;
  let seq = 0;
  const feed = (msg: Buffer): void => b.onMessage(Buffer.from('cotstream:v1'), msg);
  const h = () => ({ type: BatchType.events, node: PEER, epoch: EPOCH, seq: ++seq });
  return {
    router, metrics,
    events: (...envs: Envelope[]) => feed(encodeBatch(h(), envs)),
    mark: (m: Mark) => feed(encodeMark(h(), m)),
    /** a batch the peer published that never reached us */
    lose: () => { ++seq; },
    cached: () => metrics.saCacheSize(),
    close: () => { router.close(); void bus.close(); },
  };
}

describe('bus: what a received batch leaves in memory', () => {
  it('a directed event and an SA are copied out of their batch; a broadcast stays a view of it', () => {
    const bus = new RedisBus({ url: 'redis://127.0.0.1:1', nodeId: 'node-me', metrics: new Metrics({ defaultMetrics: false }), log: createLogger('silent') });
    const got: Envelope[] = [];
    const b = bus as unknown as { deliver: unknown; onMessage(ch: Buffer, msg: Buffer): void };
    b.deliver = (e: Envelope) => got.push(e);
    const ev = (kind: EnvelopeKind, callsigns: string[] | null, uids: string[] | null): Envelope =>
      ({ ...saEnv(`u-${got.length}`, kind), callsigns, uids, frame: Buffer.from(`<event uid="x" type="b-t-f">${'y'.repeat(100)}</event>`) });
    const envs = [ev(EnvelopeKind.event, null, null), ev(EnvelopeKind.event, ['Bravo'], null), ev(EnvelopeKind.event, null, ['ANDROID-1']), ev(EnvelopeKind.sa, null, null)];
    // a batch as the subscriber hands it over: one buffer in a larger read
    const batch = encodeBatch({ type: BatchType.events, node: PEER, epoch: EPOCH, seq: 1 }, envs);
    const read = Buffer.concat([Buffer.alloc(64 * 1024), batch]).subarray(64 * 1024);
    b.onMessage(Buffer.from('cotstream:v1'), read);
    assert.equal(got.length, 4);
    for (let i = 0; i < 4; i++) assert.deepEqual(got[i].frame, envs[i].frame);
    // a slow client's queue holding a directed event of a few hundred bytes must not hold the read
    assert.equal(got[0].frame.buffer, read.buffer, 'broadcast: a view (every client gets the rest of the batch too)');
    for (const i of [1, 2, 3]) assert.notEqual(got[i].frame.buffer, read.buffer, `envelope ${i} copied`);
    void bus.close();
  });
});

describe('bus: sync answers frame the sender\'s complete state', () => {
  it('the marks are header-only events batches, told apart, and nothing else is one', () => {
    const h = { type: BatchType.events, node: PEER, epoch: EPOCH, seq: 1 };
    for (const m of ['start', 'end', 'leaving'] as const) {
      const buf = encodeMark(h, m);
      assert.equal(markOf(buf, decodeHeader(buf)), m);
    }
    const ev = encodeBatch(h, [saEnv('u')]);
    assert.equal(markOf(ev, decodeHeader(ev)), null);
    const beat = encodeBatch({ ...h, type: BatchType.heartbeat }, []);
    assert.equal(markOf(beat, decodeHeader(beat)), null);
  });

  it('a complete answer drops the peer\'s clients it no longer holds, keeps the ones it names', () => {
    const r = receiver();
    try {
      r.events(saEnv('stays'), saEnv('left'));
      assert.equal(r.cached(), 2);
      r.mark('start');
      r.events(saEnv('stays', EnvelopeKind.replay));
      r.mark('end');
      assert.equal(r.cached(), 1);
      // an empty answer: the peer has no client left
      r.mark('start');
      r.mark('end');
      assert.equal(r.cached(), 0);
    } finally { r.close(); }
  });

  it('an answer with a hole proves nothing: missing its start, or a batch inside it, prunes nothing', () => {
    const r = receiver();
    try {
      r.events(saEnv('a'), saEnv('b'));
      // we subscribed in the middle of an answer (its start and its replay of `a` never reached us)
      r.lose();
      r.lose();
      r.mark('end');
      assert.equal(r.cached(), 2, 'an end without its start pruned');
      // a batch of the answer lost between its marks
      r.mark('start');
      r.lose();
      r.events(saEnv('b', EnvelopeKind.replay));
      r.mark('end');
      assert.equal(r.cached(), 2, 'an answer with a gap pruned');
      // the next complete one does
      r.mark('start');
      r.events(saEnv('b', EnvelopeKind.replay));
      r.mark('end');
      assert.equal(r.cached(), 1);
    } finally { r.close(); }
  });

  it('a node\'s goodbye (leaving mark) drops what is still cached of its clients, even after a gap', () => {
    const r = receiver();
    try {
      r.events(saEnv('a'), saEnv('b'));
      // a's disconnect notice was lost; b's came
      r.lose();
      r.events({ ...saEnv('b', EnvelopeKind.gone), frame: Buffer.from('<event uid="x" type="t-x-d-d"/>') });
      assert.equal(r.cached(), 1);
      r.mark('leaving');
      assert.equal(r.cached(), 0);
    } finally { r.close(); }
  });
});
