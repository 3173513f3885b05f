// Write coalescing (FlushScheduler, --write-coalesce): real Sessions over a stream that records
// each write the session makes (test/helpers/session.ts), so the test sees exactly how many
// writes left and when. Delivery itself over real TLS is covered by the e2e tests.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { FlushScheduler } from '../../src/session.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { memSession, WriteRecorder } from '../helpers/session.ts';

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const EVENT = Buffer.from('<event version="2.0" uid="u" type="a-f-G" how="m-g"/>');

describe('server: write coalescing', function () {
  this.timeout(10000);

  it('an event for a quiet client leaves in the same turn of the event loop', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const { s, rec } = memSession(new FlushScheduler(m, 50), m);
    s.send(EVENT);
    assert.equal(rec.writes.length, 0, 'queued, not written synchronously');
    await tick();
    assert.deepEqual(rec.writes.map((w) => w.events), [1]);
    s.close('shutdown');
  });

  it('events for a client written less than --write-coalesce ago wait and leave in one write', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const COALESCE = 40; // long enough that a loaded machine cannot blur the two phases
    const { s, rec } = memSession(new FlushScheduler(m, COALESCE), m);
    s.send(EVENT);
    await tick();
    const first = rec.writes[0].at;
    // ten events, each in its own turn of the event loop (as from ten senders, or bus batches)
    for (let i = 0; i < 10; i++) { s.send(EVENT); await tick(); }
    assert.equal(rec.writes.length, 1, 'nothing written before the interval is over');
    await sleep(COALESCE * 3);
    assert.deepEqual(rec.writes.map((w) => w.events), [1, 10], 'the ten leave together');
    assert.ok(rec.writes[1].at - first >= COALESCE - 1, `second write ${(rec.writes[1].at - first).toFixed(1)} ms after the first`);
    assert.equal(m.latency.count, 0, 'the router records latency, not send()');
    s.close('shutdown');
  });

  it('--write-coalesce 0: one write per turn of the event loop', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const { s, rec } = memSession(new FlushScheduler(m, 0), m);
    for (let i = 0; i < 10; i++) { s.send(EVENT); await tick(); }
    assert.deepEqual(rec.writes.map((w) => w.events), Array(10).fill(1));
    s.close('shutdown');
  });

  it('flush() (shutdown) writes what waits at once, and latency is observed after the deferred writes', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const sched = new FlushScheduler(m, 10_000);
    const a = memSession(sched, m);
    const b = memSession(sched, m);
    a.s.send(EVENT);
    await tick(); // a was just written: its next events wait
    a.s.send(EVENT);
    a.s.send(EVENT);
    b.s.send(EVENT); // b is quiet: goes out this turn
    sched.delivered(performance.now());
    await tick();
    assert.deepEqual(b.rec.writes.map((w) => w.events), [1]);
    assert.deepEqual(a.rec.writes.map((w) => w.events), [1]);
    assert.equal(m.latency.count, 0, 'not observed while a write of that event may still wait');
    sched.flush();
    assert.deepEqual(a.rec.writes.map((w) => w.events), [1, 2]);
    assert.equal(m.latency.count, 1);
    a.s.close('shutdown');
    b.s.close('shutdown');
  });

  it('latency runs to the write to the last recipient: a fan-out that takes time is counted in it', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const sched = new FlushScheduler(m, 0);
    // three recipients whose writes take 5 ms each (a fan-out to a few hundred TLS sockets)
    const rs = [0, 1, 2].map(() => memSession(sched, m, undefined, undefined, new WriteRecorder(5)));
    const t0 = performance.now();
    for (const r of rs) r.s.send(EVENT);
    sched.delivered(t0);
    await tick();
    const last = Math.max(...rs.map((r) => r.rec.writes[0].at));
    assert.equal(m.latency.count, 1);
    assert.ok(m.latency.sum * 1000 >= last - t0, `observed ${(m.latency.sum * 1000).toFixed(2)} ms, last recipient written ${(last - t0).toFixed(2)} ms after the read`);
    for (const r of rs) r.s.close('shutdown');
  });
});
