#!/usr/bin/env -S node --import tsx
// Load generator: N mutual-TLS clients against a running server (cotstream, the relay, anything
// that speaks streaming CoT), S of them senders at R events/s each, open loop. Every client reads
// and counts what it gets; each event carries a marker (generator, sender, step, sequence, send
// time) so loss, duplicates and latency are exact. See bench/README.md.
import tls from 'node:tls';
import type { OnReadOpts } from 'node:net';
import { randomInt } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import { benchCreds } from './lib/certs.ts';
import { EventMaker, MARK, MARK_BYTE, markEndsAt, nowUs, readMark, type Mark } from './lib/event.ts';
import { Histogram } from './lib/hist.ts';
import { ProcWatch } from './lib/proc.ts';
import { fmt, textTable } from './lib/table.ts';

export interface LoadOptions {
  host: string;
  port: number;
  /** nodes of one cluster: clients are spread over these ports round-robin (client i on ports[i % n]) */
  ports?: number[];
  certsDir: string;
  /** client certificates in the pool (connections use them round-robin) */
  certs: number;
  clients: number;
  senders: number;
  /** events/s per sender, one step per entry */
  rates: number[];
  /** seconds of sending per step */
  duration: number;
  /** seconds to wait for stragglers after a step before counting loss */
  grace: number;
  size: number;
  concurrency: number;
  serverPid: number;
  metricsUrl: string;
  /** seconds to hold the connections idle before measuring server RSS (connection runs) */
  hold: number;
  /** epoch ms at which the first step starts (to line up several generator processes) */
  startAt: number;
  genId: number;
  /** seconds of unreported sending at the first rate before the first step */
  warmup: number;
  /**
   * the warm-up lasts until this process and the server (serverPid) have run this many seconds: past
   * the start-up GCs of tsx's module-hooks thread (see SETTLE_WHY); ignored with startAt
   */
  settle: number;
  /** stop after the first step that is saturated (delivered < 85% of sent, any loss, or unsent events) */
  stopWhenSaturated: boolean;
}

export interface StepResult {
  step: number;
  ratePerSender: number;
  offeredEvents: number;
  offeredDeliveries: number;
  sent: number;
  notSent: number;
  deliveries: number;
  deliveriesPerSec: number;
  expected: number;
  received: number;
  loss: number;
  lossPct: number;
  dupes: number;
  echoes: number;
  late: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** p99 of the server's own cot_delivery_latency_seconds in this step (needs --metrics-url; NaN without) */
  serverP99Ms: number;
  serverCpuPct: number;
  /** server CPU time per delivery: robust to other work on the machine, unlike deliveries/s */
  serverCpuUsPerDelivery: number;
  serverPeakRssMiB: number;
  genCpuPct: number;
  sendLagMaxMs: number;
  serverDropsSlow: number;
  serverDropsRate: number;
  closed: number;
}

export interface LoadResult {
  host: string;
  port: number;
  clients: number;
  senders: number;
  receivers: number;
  size: number;
  connectSeconds: number;
  handshakesPerSec: number;
  connectFailures: number;
  serverCpuConnectPct: number;
  /** server CPU time per handshake (ms): robust to other work on the machine */
  serverCpuMsPerHandshake: number;
  genCpuConnectPct: number;
  serverRssBeforeMiB: number;
  serverRssConnectedMiB: number;
  serverRssPerConnKiB: number;
  steps: StepResult[];
}

const SENDER_BACKLOG_LIMIT = 16 * 1024 * 1024;

/** per receiver, per source (generator, sender): delivery count and last sequence */
interface SrcState { n: number; last: number }

class Run {
  step = -1;
  sending = false;
  winDeliveries = 0;
  deliveries = 0;
  dupes = 0;
  echoes = 0;
  late = 0;
  /** distinct deliveries of this generator's own events in this step */
  ownReceived = 0;
  readonly hist = new Histogram();
  constructor(readonly genId: number) {}
}

/**
 * All receive buffers: each socket's reads are decrypted into this one buffer and handed to its
 * client synchronously (net/tls `onread`), so a receiver allocates nothing per read and skips the
 * readable-stream machinery. The generator must cost less per delivery than the server it measures.
 */
const READ_BUF = Buffer.allocUnsafe(65536);
const LT = 0x3c;

class BenchClient {
  readonly sources = new Map<number, SrcState>();
  /** the start of a marker cut by the end of the previous read (a copy: READ_BUF is reused) */
  private rest: Buffer | null = null;
  private readonly m: Mark = { gen: 0, sender: 0, step: 0, seq: 0, tUs: 0 };
  sock!: tls.TLSSocket;
  closed = false;
  /** sender state */
  maker: EventMaker | null = null;
  /** where in its period this sender's events fall, 0..1 (senders are spread over the period) */
  phase = 0;
  seq = 0;
  sentThisStep = 0;
  notSent = 0;

  constructor(readonly idx: number, private readonly run: Run) {}

  attach(sock: tls.TLSSocket): this {
    this.sock = sock;
    sock.on('close', () => { this.closed = true; });
    sock.on('error', () => { this.closed = true; });
    return this;
  }

  readonly onRead = (nread: number, buf: Buffer): boolean => {
    // a view of exactly the bytes read: memchr must not run on into stale bytes of READ_BUF
    if (this.rest === null) this.onData(buf.subarray(0, nread));
    else {
      const b = Buffer.concat([this.rest, buf.subarray(0, nread)]);
      this.rest = null;
      this.onData(b);
    }
    return true;
  };

  private onData(b: Buffer): void {
    const run = this.run;
    const now = nowUs();
    const m = this.m;
    const n = b.length;
    let p = 0;
    let i: number;
    while ((i = b.indexOf(MARK_BYTE, p)) >= 0) {
      if (!markEndsAt(b, i)) { p = i + 1; continue; }
      const end = readMark(b, i - MARK.length + 1, m, n);
      if (end < 0) { this.rest = Buffer.from(b.subarray(i - MARK.length + 1, n)); return; }
      p = end;
      if (m.step !== run.step) { run.late++; continue; }
      if (m.gen === run.genId && m.sender === this.idx) { run.echoes++; continue; }
      run.deliveries++;
      if (run.sending) run.winDeliveries++;
      run.hist.add(now - m.tUs);
      const key = m.gen * 65536 + m.sender;
      let s = this.sources.get(key);
      if (!s) { s = { n: 0, last: -1 }; this.sources.set(key, s); }
      if (m.seq <= s.last) { run.dupes++; continue; }
      s.last = m.seq;
      s.n++;
      if (m.gen === run.genId) run.ownReceived++;
    }
    // keep the tail only when it may be the start of a marker cut by the read boundary
    for (let j = Math.max(p, n - MARK.length + 1); j < n; j++) {
      if (b[j] !== LT) continue;
      let k = 1;
      while (j + k < n && b[j + k] === MARK[k]) k++;
      if (j + k === n) { this.rest = Buffer.from(b.subarray(j, n)); return; }
    }
  }
}

function connectOne(o: LoadOptions, ctx: tls.SecureContext, port: number, client: BenchClient): Promise<BenchClient> {
  return new Promise((resolve, reject) => {
    // tls.connect takes net's `onread` (Node docs); @types/node leaves it out of ConnectionOptions
    const opts: tls.ConnectionOptions & { onread: OnReadOpts } = { host: o.host, port, servername: 'localhost', secureContext: ctx, onread: { buffer: READ_BUF, callback: client.onRead } };
    const sock = tls.connect(opts);
    const fail = (e: Error) => reject(e);
    sock.once('error', fail);
    sock.once('secureConnect', () => { sock.off('error', fail); sock.setNoDelay(true); resolve(client.attach(sock)); });
  });
}

/**
 * The server's own `cot_delivery_latency_seconds` buckets (cumulative count per upper bound, +Inf
 * last), or null without a metrics URL. Two scrapes give a step's in-server latency: from the
 * server's read of an event to its write to the last recipient, without the generator's share.
 */
async function latencyBuckets(url: string): Promise<Array<[number, number]> | null> {
  if (!url) return null;
  try {
    const text = await (await fetch(url)).text();
    const out: Array<[number, number]> = [];
    for (const m of text.matchAll(/^cot_delivery_latency_seconds_bucket\{le="([^"]+)"\} (\S+)/gm)) {
      out.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
    }
    return out.length ? out : null;
  } catch {
    return null;
  }
}

/** quantile q (ms) of the observations between two scrapes, linear within a bucket (as Prometheus does) */
export function bucketQuantileMs(a: Array<[number, number]> | null, b: Array<[number, number]> | null, q: number): number {
  if (!a || !b || a.length !== b.length) return NaN;
  const total = b[b.length - 1][1] - a[a.length - 1][1];
  if (total <= 0) return NaN;
  const rank = q * total;
  let lo = 0;
  let below = 0;
  for (let i = 0; i < b.length; i++) {
    const [le, cum] = b[i];
    const c = cum - a[i][1];
    if (c >= rank) {
      if (le === Infinity) return lo * 1000;
      return (lo + (le - lo) * (c === below ? 1 : (rank - below) / (c - below))) * 1000;
    }
    lo = le;
    below = c;
  }
  return NaN;
}

async function metricSum(url: string, reason: string): Promise<number> {
  if (!url) return NaN;
  try {
    const text = await (await fetch(url)).text();
    const m = new RegExp(`^cot_events_dropped_total\\{reason="${reason}"\\} (\\S+)`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  } catch {
    return NaN;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

export async function runLoad(o: LoadOptions, progress: (s: string) => void = () => {}): Promise<LoadResult> {
  if (o.senders > o.clients) throw new Error(`--senders (${o.senders}) cannot exceed --clients (${o.clients})`);
  const creds = await benchCreds(o.certsDir, o.certs, progress);
  const ctxs = creds.clients.map((c) => tls.createSecureContext({ ca: creds.ca, cert: c.cert, key: c.key }));
  const watch = new ProcWatch(o.serverPid);
  const run = new Run(o.genId);
  const clients: BenchClient[] = [];

  // ---- connect ----------------------------------------------------------------------------
  const rssBefore = watch.sample();
  const sc0 = watch.cpu();
  const gc0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  let failures = 0;
  let lastReport = t0;
  const worker = async () => {
    while (next < o.clients) {
      const i = next++;
      try {
        const port = o.ports?.length ? o.ports[i % o.ports.length] : o.port;
        clients[i] = await connectOne(o, ctxs[i % ctxs.length], port, new BenchClient(i, run));
      } catch (err) {
        failures++;
        if (failures === 1) progress(`connect failed: ${(err as Error).message}`);
      }
      const now = performance.now();
      if (now - lastReport > 1000) { lastReport = now; progress(`connecting: ${clients.filter(Boolean).length}/${o.clients}`); }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.clients) }, worker));
  const connectSec = (performance.now() - t0) / 1000;
  const serverCpuConnect = (watch.cpu() - sc0) / connectSec * 100;
  const gcu = process.cpuUsage(gc0);
  const live = clients.filter(Boolean);
  if (failures > 0) throw new Error(`${failures} of ${o.clients} connections failed (ulimit -n? server limits such as --max-clients-per-ip?)`);
  progress(`connected ${live.length} clients in ${connectSec.toFixed(2)} s (${fmt(live.length / connectSec)} handshakes/s)`);
  await sleep(o.hold * 1000);
  const rssConnected = watch.sample();

  // ---- steps ------------------------------------------------------------------------------
  const senders = live.slice(0, o.senders);
  // Senders are devices with clocks of their own: their schedules are spread evenly over one period
  // (sender i of S sends i/S of a period after sender 0; another generator process is offset by its
  // id), not all in the same millisecond. In phase, S senders at R/s are one burst of S events every
  // 1/R s: at 500 receivers and 10 senders, 5,000 deliveries at once, whose queueing (in the server
  // and in this generator) then dominates the latency even at a few percent of CPU.
  const genPhase = (o.genId % 997) / 997;
  senders.forEach((s, i) => {
    s.maker = new EventMaker({ gen: o.genId, sender: s.idx, uid: `bench-${o.genId}-${s.idx}`, callsign: `B${o.genId % 1000}-${s.idx}`, size: o.size });
    s.phase = ((i + genPhase) / senders.length) % 1;
  });
  if (o.startAt > 0 && o.rates.length) await sleep(Math.max(0, o.startAt - Date.now()));
  // The warm-up is sent, not slept: an idle Node process has its heap (young generation included)
  // shrunk by V8's memory reducer after ~8 s, and the next load starts by regrowing it.
  let warmup = o.warmup;
  if (o.startAt === 0 && o.settle > 0) {
    const age = Math.min(process.uptime(), watch.ageSeconds() || Infinity);
    if (o.settle - age > warmup) {
      warmup = o.settle - age;
      progress(`warm-up of ${fmt(warmup, 1)} s: the first step waits until the generator and the server are ${fmt(o.settle)} s old (--settle)`);
    }
  }
  const steps: StepResult[] = [];
  // a warm-up step first (JIT, buffers, the server's first GCs), sent at the first rate and not
  // reported: without it the first step's tail latency measures start-up, not the server
  const warm = warmup > 0 && o.rates.length > 0;
  for (let k = warm ? -1 : 0; k < o.rates.length; k++) {
    const rate = o.rates[Math.max(0, k)];
    const duration = k < 0 ? warmup : o.duration;
    // markers carry a non-negative step number: the warm-up's is one no measured step uses
    const markStep = k < 0 ? o.rates.length : k;
    run.step = markStep;
    run.winDeliveries = run.deliveries = run.dupes = run.echoes = run.late = run.ownReceived = 0;
    run.hist.reset();
    for (const c of live) { c.sources.clear(); c.sentThisStep = 0; c.notSent = 0; }
    const drop0 = [await metricSum(o.metricsUrl, 'slow_consumer'), await metricSum(o.metricsUrl, 'rate_limit')];
    const lat0 = await latencyBuckets(o.metricsUrl);
    watch.takePeak();
    const scpu0 = watch.cpu();
    const gcpu0 = process.cpuUsage();
    const start = performance.now();
    let lagMax = 0;
    run.sending = true;
    // open loop: every millisecond each sender writes whatever its schedule says is due by now
    await new Promise<void>((resolve) => {
      let lastProgress = start;
      const tick = () => {
        const now = performance.now();
        const el = Math.min(now - start, duration * 1000);
        const tUs = nowUs();
        const iso = new Date(tUs / 1000).toISOString();
        const stale = new Date(tUs / 1000 + 60_000).toISOString();
        for (const s of senders) {
          const due = Math.floor(el * rate / 1000 + s.phase) - s.sentThisStep - s.notSent;
          if (due <= 0 || s.closed) continue;
          // the schedule slipped by this much when the oldest due event goes out now
          const lag = el - (s.sentThisStep + s.notSent + 1 - s.phase) * 1000 / rate;
          if (lag > lagMax) lagMax = lag;
          if (s.sock.writableLength > SENDER_BACKLOG_LIMIT) { s.notSent += due; continue; }
          let out = '';
          for (let j = 0; j < due; j++) out += s.maker!.event(iso, stale, markStep, s.seq++, tUs);
          s.sock.write(out);
          s.sentThisStep += due;
        }
        if (now - lastProgress >= 1000) {
          lastProgress = now;
          progress(`${k < 0 ? 'warm-up' : `step ${k + 1}/${o.rates.length}`} ${fmt(rate * senders.length)} ev/s: delivered ${fmt(run.winDeliveries / ((now - start) / 1000))}/s, p99 ${fmt(run.hist.quantile(0.99) / 1000, 2)} ms`);
        }
        if (now - start >= duration * 1000) { clearInterval(timer); resolve(); }
      };
      const timer = setInterval(tick, 1);
    });
    run.sending = false;
    const wall = (performance.now() - start) / 1000;
    const scpu = (watch.cpu() - scpu0) / wall * 100;
    const gcpu = process.cpuUsage(gcpu0);
    const winDeliveries = run.winDeliveries;
    const sent = senders.reduce((a, s) => a + s.sentThisStep, 0);
    const notSent = senders.reduce((a, s) => a + s.notSent, 0);
    const expected = sent * (live.length - 1);
    // grace: stragglers still in flight; stop early once everything arrived
    const graceEnd = performance.now() + o.grace * 1000;
    while (performance.now() < graceEnd && run.ownReceived < expected) await sleep(25);
    if (k < 0) { progress(`warm-up done (${fmt(warmup, 1)} s at ${fmt(rate * senders.length)} ev/s, not reported)`); continue; }
    const drop1 = [await metricSum(o.metricsUrl, 'slow_consumer'), await metricSum(o.metricsUrl, 'rate_limit')];
    const lat1 = await latencyBuckets(o.metricsUrl);
    const h = run.hist;
    const r: StepResult = {
      step: k,
      ratePerSender: rate,
      offeredEvents: rate * senders.length,
      offeredDeliveries: rate * senders.length * (live.length - 1),
      sent,
      notSent,
      deliveries: run.deliveries,
      deliveriesPerSec: winDeliveries / wall,
      expected,
      received: run.ownReceived,
      loss: expected - run.ownReceived,
      lossPct: expected > 0 ? (expected - run.ownReceived) / expected * 100 : 0,
      dupes: run.dupes,
      echoes: run.echoes,
      late: run.late,
      p50Ms: h.quantile(0.5) / 1000,
      p90Ms: h.quantile(0.9) / 1000,
      p99Ms: h.quantile(0.99) / 1000,
      maxMs: h.max / 1000,
      serverP99Ms: bucketQuantileMs(lat0, lat1, 0.99),
      serverCpuPct: scpu,
      serverCpuUsPerDelivery: winDeliveries > 0 ? scpu / 100 * wall * 1e6 / winDeliveries : NaN,
      serverPeakRssMiB: watch.takePeak() / MiB,
      genCpuPct: (gcpu.user + gcpu.system) / 1000 / (wall * 1000) * 100,
      sendLagMaxMs: lagMax,
      serverDropsSlow: drop1[0] - drop0[0],
      serverDropsRate: drop1[1] - drop0[1],
      closed: live.filter((c) => c.closed).length,
    };
    steps.push(r);
    progress(`step ${k + 1}/${o.rates.length} done: ${fmt(r.deliveriesPerSec)} deliveries/s, loss ${fmt(r.loss)}, dupes ${r.dupes}, p99 ${fmt(r.p99Ms, 2)} ms, server CPU ${fmt(r.serverCpuPct)}%, generator CPU ${fmt(r.genCpuPct)}%`);
    // judged against what was actually sent: a low fractional rate sends fewer events than rate x duration
    const saturated = r.deliveriesPerSec < 0.85 * (sent * (live.length - 1) / wall) || r.loss > 0 || r.notSent > 0;
    if (r.genCpuPct > 90) progress('warning: the generator used over 90% of a core: it may be the bottleneck (spread it over processes, see bench/README.md)');
    if (saturated && o.stopWhenSaturated) { progress('saturated: remaining steps skipped'); break; }
  }

  watch.stop();
  for (const c of live) c.sock.destroy();
  return {
    host: o.host,
    port: o.port,
    clients: live.length,
    senders: senders.length,
    receivers: live.length - senders.length,
    size: o.size,
    connectSeconds: connectSec,
    handshakesPerSec: live.length / connectSec,
    connectFailures: failures,
    serverCpuConnectPct: serverCpuConnect,
    serverCpuMsPerHandshake: serverCpuConnect / 100 * connectSec * 1000 / live.length,
    genCpuConnectPct: (gcu.user + gcu.system) / 1000 / (connectSec * 1000) * 100,
    serverRssBeforeMiB: rssBefore / MiB,
    serverRssConnectedMiB: rssConnected / MiB,
    serverRssPerConnKiB: (rssConnected - rssBefore) / 1024 / live.length,
    steps,
  };
}

export function resultTable(r: LoadResult): string {
  const rows = [['ev/s offered', 'deliv/s', 'loss', 'dupes', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'in-srv p99 ms', 'srv CPU%', 'srv µs/deliv', 'srv RSS MiB', 'gen CPU%', 'srv drops']];
  for (const s of r.steps) {
    rows.push([fmt(s.offeredEvents), fmt(s.deliveriesPerSec), fmt(s.loss), fmt(s.dupes), fmt(s.p50Ms, 2), fmt(s.p90Ms, 2), fmt(s.p99Ms, 2), fmt(s.maxMs, 1), fmt(s.serverP99Ms, 2),
      fmt(s.serverCpuPct), fmt(s.serverCpuUsPerDelivery, 2), fmt(s.serverPeakRssMiB, 1), fmt(s.genCpuPct), fmt(s.serverDropsSlow + s.serverDropsRate)]);
  }
  const head = `${r.clients} clients (${r.senders} senders, ${r.receivers} receivers), ${r.size}-byte events: ` +
    `connected in ${fmt(r.connectSeconds, 2)} s = ${fmt(r.handshakesPerSec)} handshakes/s; server RSS ${fmt(r.serverRssBeforeMiB, 1)} -> ${fmt(r.serverRssConnectedMiB, 1)} MiB ` +
    `(${fmt(r.serverRssPerConnKiB, 1)} KiB/connection)\n`;
  return head + (r.steps.length ? textTable(rows) : '');
}

/**
 * Why the first step waits (--settle). tsx runs its ESM hooks on a worker thread; V8's memory reducer
 * collects that thread's heap three times, 8 to 9.5 s after the process starts (4–13 ms each). With the
 * process pinned to one core those collections take the core from the event loop, so every receiver is
 * late together: measured at 100 receivers x 1 sender, 8,000 ev/s, p99 12–15 ms when the step overlapped
 * them and 5–9 ms when it started after them (4 alternating pairs). A start-up cost, not the steady state.
 * The wait is spent sending (a longer warm-up), not idle: an idle server's heap is shrunk by the same
 * memory reducer, and a half-saturation run that began after 9 idle seconds had a warm-up p99 of 195 ms
 * and a first-second p99 of 45 ms at 10 receivers.
 */
const SETTLE_WHY = 'the warm-up (at the first rate) lasts until the generator and --server-pid have run this long: tsx\'s module-hooks thread does three start-up GCs 8–9.5 s after start, which stall a process pinned to one core (ignored with --start-at)';

function num(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: expected a non-negative number, got "${v}"`);
    return n;
  };
}

export function buildProgram(): Command {
  return new Command('load')
    .description('open N mutual-TLS CoT clients, make S of them send at R events/s each (open loop), measure deliveries, loss, duplicates and latency')
    .option('--host <addr>', 'server address', '127.0.0.1')
    .requiredOption('--port <n>', 'server TLS port', num('--port'))
    .addOption(new Option('--ports <list>', 'several nodes of one cluster: spread the clients over these ports round-robin (overrides --port)').argParser((v) => v.split(',').map(num('--ports'))))
    .option('--certs-dir <dir>', 'dev PKI (CA + server cert; created when missing); bench client certs go in <dir>/bench-clients', 'certs')
    .option('--certs <n>', 'client certificates in the pool, used round-robin (issued when missing)', num('--certs'), 8)
    .option('-n, --clients <n>', 'connections to open', num('--clients'), 11)
    .option('-s, --senders <n>', 'how many of them send (the others only receive; senders receive too)', num('--senders'), 1)
    .addOption(new Option('-r, --rate <list>', 'events/s per sender; a comma-separated list runs one step per rate').default([100]).argParser((v) => v.split(',').map(num('--rate'))))
    .option('-d, --duration <s>', 'seconds of sending per step', num('--duration'), 5)
    .option('--warmup <s>', 'seconds of sending at the first rate before the first step, not reported (JIT, first GCs)', num('--warmup'), 2)
    .option('--settle <s>', SETTLE_WHY, num('--settle'), 10)
    .option('--grace <s>', 'seconds to wait for late events before counting loss', num('--grace'), 2)
    .option('--size <bytes>', 'event size', num('--size'), 600)
    .option('--concurrency <n>', 'handshakes in flight while connecting', num('--concurrency'), 32)
    .option('--server-pid <pid>', 'server process to report CPU % and peak RSS of (Linux /proc)', num('--server-pid'), 0)
    .option('--metrics-url <url>', 'cotstream /metrics URL: report the server-counted drops per step', '')
    .option('--hold <s>', 'seconds to hold the connections before measuring server RSS', num('--hold'), 0.5)
    .option('--start-at <epoch-ms>', 'start the first step at this time (lines up several generator processes)', num('--start-at'), 0)
    .option('--gen-id <n>', 'generator id in the markers (default random; give each process its own)', num('--gen-id'))
    .option('--stop-when-saturated', 'skip the remaining steps after one that delivered under 85% of what it sent, lost events, or could not send', false)
    .option('--json', 'print the result as JSON on stdout instead of a table', false)
    .option('-q, --quiet', 'no progress lines on stderr', false);
}

async function main(): Promise<void> {
  const cmd = buildProgram();
  cmd.parse(process.argv);
  const f = cmd.opts();
  const o: LoadOptions = {
    host: f.host, port: f.port, ports: f.ports, certsDir: f.certsDir, certs: Math.max(1, f.certs), clients: f.clients, senders: f.senders,
    rates: f.rate, duration: f.duration, warmup: f.warmup, settle: f.settle, grace: f.grace, size: f.size, concurrency: Math.max(1, f.concurrency), serverPid: f.serverPid,
    metricsUrl: f.metricsUrl, hold: f.hold, startAt: f.startAt, genId: f.genId ?? randomInt(1, 2 ** 31),
    stopWhenSaturated: f.stopWhenSaturated,
  };
  if (o.senders === 0) o.rates = [];
  const t = process.hrtime.bigint();
  const progress = f.quiet ? () => {} : (s: string) => process.stderr.write(`[load ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(1)}s] ${s}\n`);
  const r = await runLoad(o, progress);
  process.stdout.write(f.json ? JSON.stringify(r) + '\n' : resultTable(r));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then(() => process.exit(0), (err: Error) => { process.stderr.write(`load: ${err.message}\n`); process.exit(1); });
}
