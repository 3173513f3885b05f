// The load bench must not rot: run bench/load.ts (the real CLI, as its own process) for ~2 s with
// a handful of clients against an in-process cotstream and against bench/relay.ts, and check it
// reports sane numbers. `make bench` itself never runs in `make test`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Server } from 'node:tls';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { startTestServer, ROOT, type TestServer } from '../helpers/server.ts';
import { startRelay } from '../../bench/relay.ts';
import { benchCreds } from '../../bench/lib/certs.ts';
import { ageSeconds } from '../../bench/lib/proc.ts';
import { bucketQuantileMs, type LoadResult } from '../../bench/load.ts';

function runLoad(args: string[]): Promise<LoadResult> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'load.ts'), '--json', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => {
      if (code !== 0) reject(new Error(`load.ts exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as LoadResult);
    });
  });
}

/** 4 clients, 2 of them sending 50 events/s for 2 s: every other client must get every event. */
function assertSane(r: LoadResult, withServerStats: boolean): void {
  assert.equal(r.clients, 4);
  assert.equal(r.senders, 2);
  assert.equal(r.connectFailures, 0);
  assert.ok(r.handshakesPerSec > 0, 'handshake rate');
  assert.equal(r.steps.length, 1);
  const s = r.steps[0];
  assert.ok(s.sent >= 150 && s.sent <= 200, `sent ${s.sent} (2 senders x 50/s x 2 s)`);
  assert.equal(s.expected, s.sent * 3);
  assert.equal(s.loss, 0, 'no loss at a light rate');
  assert.equal(s.received, s.expected);
  assert.equal(s.dupes, 0);
  assert.equal(s.echoes, 0, 'never back to the sender');
  assert.ok(s.deliveriesPerSec > 150 && s.deliveriesPerSec < 400, `deliveries/s ${s.deliveriesPerSec} (offered 300)`);
  assert.ok(s.p50Ms > 0 && s.p50Ms <= s.p99Ms && s.p99Ms <= s.maxMs * 1.01, `latency p50 ${s.p50Ms} p99 ${s.p99Ms} max ${s.maxMs}`);
  assert.ok(s.p99Ms < 1000, `p99 ${s.p99Ms} ms on loopback at 300 deliveries/s`);
  assert.ok(s.genCpuPct > 0 && s.genCpuPct < 200, `generator CPU ${s.genCpuPct}`);
  if (withServerStats) {
    assert.ok(s.serverCpuPct > 0, `server CPU ${s.serverCpuPct}`);
    assert.ok(s.serverPeakRssMiB > 10, `server RSS ${s.serverPeakRssMiB}`);
  }
}

/** the server's own latency histogram, read over /metrics before and after the step */
function assertServerLatency(r: LoadResult, hasMetrics: boolean): void {
  const s = r.steps[0];
  // NaN, which --json writes as null
  if (!hasMetrics) { assert.ok(!Number.isFinite(s.serverP99Ms), 'no in-server latency without --metrics-url'); return; }
  assert.ok(s.serverP99Ms > 0 && s.serverP99Ms < 1000, `in-server p99 ${s.serverP99Ms} ms`);
}

describe('bench: load.ts smoke run', function () {
  this.timeout(60000);
  let pki: SharedPki;
  let srv: TestServer;
  let relay: Server;

  before(async () => {
    pki = await testPki();
    await benchCreds(pki.dir, 2); // issue the bench certificates once, before the timed runs
    srv = await startTestServer(pki.dir, { rateEvents: '0', rateBytes: '0' });
    const c = await benchCreds(pki.dir, 0);
    relay = await startRelay({ host: '127.0.0.1', port: 0, ca: c.ca, cert: c.cert, key: c.key });
  });
  after(async () => {
    await srv?.stop();
    relay?.close();
  });

  const common = (port: number) => ['--port', String(port), '--certs-dir', pki.dir, '--certs', '2', '-n', '4', '-s', '2', '-r', '50', '-d', '2', '--grace', '2', '-q'];
  // no --settle wait (default 10 s) unless a test asks for one
  const noSettle = ['--settle', '0'];

  it('against cotstream: no loss, no dupes, plausible latency, server CPU/RSS and counted drops', async () => {
    // no warm-up here: the server's received counter must equal what the one reported step sent
    const r = await runLoad([...common(srv.port), ...noSettle, '--warmup', '0', '--server-pid', String(process.pid), '--metrics-url', `http://127.0.0.1:${srv.metricsPort}/metrics`]);
    assertSane(r, true);
    assertServerLatency(r, true);
    assert.equal(r.steps[0].serverDropsSlow, 0);
    assert.equal(r.steps[0].serverDropsRate, 0);
    assert.equal(await srv.metric('cot_events_received_total'), r.steps[0].sent);
  });

  it('against the bare relay, after a warm-up stretched by --settle: the same numbers, the warm-up not reported', async () => {
    const port = (relay.address() as { port: number }).port;
    // the generator is a fresh process: --settle 5 stretches the 0.5-s warm-up until it is 5 s old
    const t0 = Date.now();
    const r = await runLoad([...common(port), '--settle', '5', '--warmup', '0.5']);
    assertSane(r, false);
    assertServerLatency(r, false);
    const took = (Date.now() - t0) / 1000;
    assert.ok(took >= 5 + 2, `warm-up until 5 s old + step 2 s, run took ${took} s`);
  });

  it('takes a quantile of the observations between two scrapes of a histogram, linear within a bucket', () => {
    const le = [0.001, 0.002, 0.004, Infinity];
    const at = (counts: number[]): Array<[number, number]> => le.map((l, i) => [l, counts[i]]);
    const before = at([5, 5, 5, 5]);
    // 100 observations in the step: 50 under 1 ms, 40 in (1, 2], 10 in (2, 4]
    const after = at([55, 95, 105, 105]);
    assert.equal(bucketQuantileMs(before, after, 0.5), 1);
    assert.ok(Math.abs(bucketQuantileMs(before, after, 0.7) - 1.5) < 1e-9);
    assert.ok(Math.abs(bucketQuantileMs(before, after, 0.99) - 3.8) < 1e-9);
    assert.ok(Number.isNaN(bucketQuantileMs(before, before, 0.99)), 'nothing observed');
    assert.ok(Number.isNaN(bucketQuantileMs(null, after, 0.99)));
  });

  it('reads a process age from /proc (what --settle compares with)', () => {
    assert.ok(Math.abs(ageSeconds(process.pid) - process.uptime()) < 0.5, `age ${ageSeconds(process.pid)} vs uptime ${process.uptime()}`);
    assert.ok(Number.isNaN(ageSeconds(2 ** 22 + 1)), 'no such process');
  });
});
