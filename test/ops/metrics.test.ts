// Issue 8: recording a metric on the hot path allocates nothing, and the hand-made histogram is
// exposed exactly as Prometheus expects.
import assert from 'node:assert/strict';
import { PerformanceObserver, performance, constants } from 'node:perf_hooks';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Metrics } from '../../src/ops/metrics.ts';
import { FlushScheduler } from '../../src/session.ts';
import { metricValue } from '../helpers/server.ts';
import { promtool } from '../helpers/prometheus.ts';

v8.setFlagsFromString('--expose-gc');
const gcFn = runInNewContext('gc') as (o?: { type: 'minor' | 'major' }) => void;
function minorGc(): void {
  gcFn({ type: 'minor' });
}

/**
 * Young-generation collections while `f` runs `n` times (after a warm-up, so the optimizing
 * compiler has settled). Two million calls that allocate even 16 bytes each fill the young
 * generation many times over; calls that allocate nothing cause no scavenge at all.
 */
async function scavengesDuring(f: (i: number) => void, n = 2_000_000): Promise<number> {
  for (let i = 0; i < 300_000; i++) f(i);
  const starts: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) starts.push(e.startTime);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  // Start from an empty young generation: otherwise whatever earlier tests of the suite left there
  // plus a few legitimate small allocations (the scheduler's one setImmediate per 1024 events here,
  // since the test calls flush() itself) can tip it into one scavenge. Per-call allocations (even
  // 16 bytes x 2M calls = 32 MB) still fill it many times over, as the control shows.
  minorGc();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f(i);
  const t1 = performance.now();
  await new Promise((r) => setTimeout(r, 50)); // gc entries are delivered asynchronously
  obs.disconnect();
  return starts.filter((s) => s >= t0 && s <= t1).length;
}

describe('ops: metrics', function () {
  this.timeout(30000);

  it('hot-path counters and the latency histogram allocate nothing per event', async () => {
    const m = new Metrics({ defaultMetrics: false });
    // the control: the probe does see an allocation of a few bytes per call
    let sink: unknown = null;
    assert.ok(await scavengesDuring((i) => { sink = [i]; }) > 2, 'the probe did not see an allocating call');
    assert.ok(sink);
    assert.equal(await scavengesDuring((i) => m.bytesReceived.inc(i & 1023)), 0, 'counter inc allocates');
    assert.equal(await scavengesDuring(() => m.eventsDelivered.inc()), 0, 'counter inc() allocates');
    assert.equal(await scavengesDuring(() => m.drop.slow_consumer.inc()), 0, 'labelled counter inc allocates');
    assert.equal(await scavengesDuring(() => m.bus.out.inc()), 0, 'bus counter inc allocates');
    assert.equal(await scavengesDuring((i) => m.latency.observe((i & 1023) / 1e5)), 0, 'histogram observe allocates');
    assert.equal(metricValue(await m.registry.metrics(), 'cot_events_delivered_total'), 2_300_000);
    assert.equal(m.latency.count, 2_300_000);
  });

  it('the flush scheduler records delivery latency without allocating per event or per tick', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const sched = new FlushScheduler(m);
    const t0 = performance.now();
    // 1024 events per tick, as under load; flush() is what the setImmediate runs
    const scav = await scavengesDuring((i) => {
      sched.delivered(t0);
      if ((i & 1023) === 1023) sched.flush();
    });
    sched.flush();
    assert.equal(scav, 0, 'latency recording allocates');
    assert.equal(m.latency.count, 2_300_000);
    assert.ok(m.latency.sum / m.latency.count > 0);
    await new Promise((r) => setImmediate(r)); // the scheduled flushes run (nothing left to do)
    assert.equal(m.latency.count, 2_300_000);
  });

  it('exposes the latency histogram with cumulative buckets from 50 µs to 5 s, +Inf, sum and count', async () => {
    const m = new Metrics({ defaultMetrics: false });
    for (const v of [0.00001, 0.0003, 0.0003, 0.002, 0.7, 9]) m.latency.observe(v);
    const text = await m.registry.metrics();
    const b = (le: string) => metricValue(text, 'cot_delivery_latency_seconds_bucket', { le });
    assert.equal(b('0.00005'), 1);
    assert.equal(b('0.00025'), 1);
    assert.equal(b('0.0005'), 3);
    assert.equal(b('0.0025'), 4);
    assert.equal(b('0.5'), 4);
    assert.equal(b('1'), 5);
    assert.equal(b('5'), 5);
    assert.equal(b('+Inf'), 6);
    assert.equal(metricValue(text, 'cot_delivery_latency_seconds_count'), 6);
    assert.ok(Math.abs(metricValue(text, 'cot_delivery_latency_seconds_sum') - 9.70261) < 1e-9);
    assert.match(text, /# TYPE cot_delivery_latency_seconds histogram/);
    // a boundary value falls in its own bucket (le is "less than or equal")
    m.latency.observe(0.001);
    assert.equal(metricValue(await m.registry.metrics(), 'cot_delivery_latency_seconds_bucket', { le: '0.001' }), 4);
    const r = promtool(['check', 'metrics'], text);
    assert.equal(r.code, 0, r.out);
  });

  it('counters keep their values across scrapes and series exist before the first event', async () => {
    const m = new Metrics({ defaultMetrics: false });
    let text = await m.registry.metrics();
    assert.match(text, /^cot_events_dropped_total\{reason="rate_limit"\} 0$/m);
    assert.match(text, /^cot_handshakes_total\{result="bad_cert"\} 0$/m);
    m.drop.rate_limit.inc();
    m.handshake.bad_cert.inc();
    m.bytesSent.inc(5_000_000_000); // past 2^32: no integer wrap-around
    await m.registry.metrics();
    m.drop.rate_limit.inc(2);
    text = await m.registry.metrics();
    assert.equal(metricValue(text, 'cot_events_dropped_total', { reason: 'rate_limit' }), 3);
    assert.equal(metricValue(text, 'cot_handshakes_total', { result: 'bad_cert' }), 1);
    assert.equal(metricValue(text, 'cot_bytes_sent_total'), 5_000_000_000);
    const json = await m.registry.getMetricsAsJSON();
    assert.ok(json.some((x) => x.name === 'cot_delivery_latency_seconds'));
  });

  it('event-loop lag is lag: ~0 while the loop is idle, the blocked time once it was blocked', async () => {
    const m = new Metrics();
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await m.registry.metrics(); // the statistics cover the time since the previous scrape
    await sleep(550); // five samples of an idle loop
    let text = await m.registry.metrics();
    // node records the whole sampling interval (100 ms) when nothing is late; lag is what exceeds it
    for (const q of ['min', 'p50', 'p99', 'mean']) {
      const v = metricValue(text, `nodejs_eventloop_lag_${q}_seconds`);
      assert.ok(v >= 0 && v < 0.05, `idle ${q} lag ${v} s`);
    }
    // (after a reset node measures from its next sample on: a block right after a scrape is not seen)
    await sleep(150);
    const t = performance.now();
    while (performance.now() - t < 300) { /* block the loop for 300 ms */ }
    await sleep(250);
    text = await m.registry.metrics();
    const max = metricValue(text, 'nodejs_eventloop_lag_max_seconds');
    assert.ok(max > 0.15 && max < 0.6, `max lag ${max} s after blocking 300 ms`);
    await sleep(20); // nodejs_eventloop_lag_seconds: the setImmediate queued by that scrape
    text = await m.registry.metrics();
    assert.ok(metricValue(text, 'nodejs_eventloop_lag_seconds') < 0.05);
  });
});
