// Event-loop lag, under the names of prom-client's default metrics (nodejs_eventloop_lag_*), but
// meaning lag. Node's monitorEventLoopDelay records the whole time between two of its samples, so
// a loop that is never late reads the sampling interval itself; prom-client exports those raw
// figures (~0.01 s idle at its default 10-ms sampling). We sample every 100 ms, not 10 (that timer
// alone woke an idle server 100 times a second), and subtract the interval: an idle loop reads ~0
// and a loop blocked for 200 ms reads ~0.2 s, which is what a dashboard or an alert means by lag.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import client from 'prom-client';

export const LOOP_LAG_RESOLUTION_MS = 100;

/** the lag gauges of prom-client's default metrics, replaced by registerLoopLag */
export const LOOP_LAG_METRICS = [
  'nodejs_eventloop_lag_seconds',
  'nodejs_eventloop_lag_min_seconds',
  'nodejs_eventloop_lag_max_seconds',
  'nodejs_eventloop_lag_mean_seconds',
  'nodejs_eventloop_lag_stddev_seconds',
  'nodejs_eventloop_lag_p50_seconds',
  'nodejs_eventloop_lag_p90_seconds',
  'nodejs_eventloop_lag_p99_seconds',
] as const;

/** Register the lag gauges in `r`; the statistics cover the time since the previous scrape. */
export function registerLoopLag(r: client.Registry, resolutionMs = LOOP_LAG_RESOLUTION_MS): void {
  const h = monitorEventLoopDelay({ resolution: resolutionMs });
  h.enable();
  const intervalNs = resolutionMs * 1e6;
  const lagSeconds = (ns: number): number => Math.max(0, ns - intervalNs) / 1e9;
  const registers = [r];
  const gauge = (name: string, help: string): client.Gauge => new client.Gauge({ name, help, registers });
  const now = new client.Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Delay of a setImmediate queued at the previous scrape (seconds)',
    registers,
    // one collect sets all of them, as prom-client's does; once per scrape, so a closure is fine
    collect(): void {
      const start = process.hrtime.bigint();
      setImmediate(() => now.set(Number(process.hrtime.bigint() - start) / 1e9));
      // no sample since the last scrape (scrapes under 100 ms apart): keep the previous values
      if (h.count === 0) return;
      min.set(lagSeconds(h.min));
      max.set(lagSeconds(h.max));
      mean.set(lagSeconds(h.mean));
      stddev.set(h.stddev / 1e9);
      p50.set(lagSeconds(h.percentile(50)));
      p90.set(lagSeconds(h.percentile(90)));
      p99.set(lagSeconds(h.percentile(99)));
      h.reset();
    },
  });
  // registered after `now`: a scrape reads the metrics in registration order, so these are read
  // after now's collect() has set them
  const min = gauge('nodejs_eventloop_lag_min_seconds', `Smallest event-loop lag since the last scrape (seconds a sample came later than its ${resolutionMs}-ms interval)`);
  const max = gauge('nodejs_eventloop_lag_max_seconds', 'Largest event-loop lag since the last scrape');
  const mean = gauge('nodejs_eventloop_lag_mean_seconds', 'Mean event-loop lag since the last scrape');
  const stddev = gauge('nodejs_eventloop_lag_stddev_seconds', 'Standard deviation of the event-loop lag since the last scrape');
  const p50 = gauge('nodejs_eventloop_lag_p50_seconds', 'Median event-loop lag since the last scrape');
  const p90 = gauge('nodejs_eventloop_lag_p90_seconds', '90th percentile of the event-loop lag since the last scrape');
  const p99 = gauge('nodejs_eventloop_lag_p99_seconds', '99th percentile of the event-loop lag since the last scrape');
}
