// The load bench must not rot: run bench/load.ts (the real CLI, as its own process) for ~2 s with
// a handful of clients against an in-process cotstream and against bench/relay.ts, and check it
// reports sane numbers. `make bench` itself never runs in `make test`.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Server } from 'node:tls';
import { makePki, testPki, type SharedPki, type TestPki } from '../helpers/pki.ts';
import { startTestServer, ROOT, type TestServer } from '../helpers/server.ts';
import { startRelay } from '../../bench/relay.ts';
import { benchCreds } from '../../bench/lib/certs.ts';
import { ageSeconds } from '../../bench/lib/proc.ts';
import { bucketQuantileMs, type LoadResult } from '../../bench/load.ts';
import { tempDir } from '../helpers/tmp.ts';

/** load.ts as its own process: exit code, stdout, stderr */
function runLoadRaw(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string; err: string; ms: number }> {
  const t0 = Date.now();
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'load.ts'), '--json', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  return new Promise((resolve) => { proc.once('exit', (code) => resolve({ code, out, err, ms: Date.now() - t0 })); });
}

async function runLoad(args: string[], env: NodeJS.ProcessEnv = {}): Promise<LoadResult> {
  const r = await runLoadRaw(args, env);
  if (r.code !== 0) throw new Error(`load.ts exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out) as LoadResult;
}

/** 4 clients, 2 of them sending 50 events/s for 2 s: every other client must get every event. */
function assertSane(r: LoadResult, withServerStats: boolean): void {
  assert.equal(r.clients, 4);
  assert.equal(r.senders, 2);
  assert.equal(r.connectFailures, 0);
  assert.ok(r.handshakesPerSec > 0, 'handshake rate');
  assert.equal(r.steps.length, 1);
  assert.deepEqual(r.problems, []);
  const s = r.steps[0];
  assert.equal(s.closed, 0);
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
    assert.equal(r.steps[0].serverDrops, 0, 'every reason of cot_events_dropped_total');
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

  describe('what a load tester trips over', () => {
    let foreign: SharedPki;
    let ipOnly: TestPki;
    let ipSrv: TestServer;
    let strict: TestServer;
    let quiet: TestServer;
    before(async () => {
      foreign = await testPki('foreign');
      // a server that trusts another CA than the one issuing the bench's certificates
      strict = await startTestServer(pki.dir, { ca: foreign.ca });
      // a server certificate naming 127.0.0.1 only (no localhost)
      ipOnly = await makePki([], ['127.0.0.1']);
      ipSrv = await startTestServer(ipOnly.dir, { rateEvents: '0', rateBytes: '0' });
      // closes a client after 1.5 s without a byte from it; its /metrics wants a token
      quiet = await startTestServer(pki.dir, { rateEvents: '0', rateBytes: '0', idleTimeout: '1500', metricsToken: 'bench-token' });
    });
    after(async () => {
      await strict?.stop();
      await ipSrv?.stop();
      await quiet?.stop();
      ipOnly?.cleanup();
    });

    it('a server that refuses the clients\' certificate (TLS 1.3: closed right after the handshake) fails the run, naming the refusal', async () => {
      const r = await runLoadRaw([...common(strict.port), ...noSettle, '--warmup', '0']);
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, /4 of 4 connected clients were closed by the server right after the TLS handshake/);
      assert.match(r.err, /client certificate .*not trusted by the server/);
      assert.equal(r.out, '', 'no result table');
      // the tester's own certificate from another CA, the same refusal
      const mallory = await foreign.client('mallory');
      const own = await runLoadRaw(['--port', String(srv.port), '--ca', pki.ca, '--client-cert', mallory.cert, '--client-key', mallory.key, '-n', '3', '-s', '1', '-d', '1', ...noSettle, '-q']);
      assert.equal(own.code, 1, own.err);
      assert.match(own.err, /closed by the server right after the TLS handshake.*--client-cert /s);
    });

    it('connects with the tester\'s own certificate (--ca, --client-cert/--client-key, or --client-p12) and issues nothing', async () => {
      const bravo = await pki.client('bravo-bench');
      const dir = tempDir('bench-empty');
      try {
        // --certs-dir points at an empty directory: it must stay empty (no CA made, nothing issued)
        const r = await runLoad([...common(srv.port), ...noSettle, '--warmup', '0', '--certs-dir', dir, '--ca', pki.ca, '--client-cert', bravo.cert, '--client-key', bravo.key]);
        assertSane(r, false);
        const p12 = await runLoad([...common(srv.port), ...noSettle, '--warmup', '0', '--certs-dir', dir, '--client-p12', bravo.p12], { LOAD_P12_PASSWORD: bravo.password });
        assertSane(p12, false);
        assert.deepEqual(fs.readdirSync(dir), []);
        // and without the own certificate, a --certs-dir that holds no CA is an error, not a new CA
        const none = await runLoadRaw([...common(srv.port), ...noSettle, '--certs-dir', dir]);
        assert.equal(none.code, 1);
        assert.match(none.err, /no CA in .*--client-cert/);
        assert.deepEqual(fs.readdirSync(dir), []);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('a server certificate that names only 127.0.0.1 verifies with --host 127.0.0.1; --servername checks another name', async () => {
      const r = await runLoad([...common(ipSrv.port), '--certs-dir', ipOnly.dir, '--host', '127.0.0.1', ...noSettle, '--warmup', '0']);
      assertSane(r, false);
      const bad = await runLoadRaw([...common(ipSrv.port), '--certs-dir', ipOnly.dir, '--servername', 'localhost', ...noSettle]);
      assert.equal(bad.code, 1);
      assert.match(bad.err, /the server's certificate does not name localhost/);
      assert.doesNotMatch(bad.err, /ulimit|max-clients-per-ip/, 'no descriptor or limit hint for a certificate error');
    });

    it('a listener that accepts TCP and never speaks TLS: a clear error after --connect-timeout, not a hang', async () => {
      const held: net.Socket[] = [];
      const silent = net.createServer((sock) => { held.push(sock); });
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      try {
        const r = await runLoadRaw([...common((silent.address() as net.AddressInfo).port), ...noSettle, '--connect-timeout', '1']);
        assert.equal(r.code, 1);
        assert.match(r.err, /no TLS handshake within 1 s \(--connect-timeout\).*did not complete a TLS handshake/s);
        assert.ok(r.ms < 15000, `failed after ${r.ms} ms`);
      } finally {
        for (const s of held) s.destroy();
        silent.close();
      }
    });

    it('a server that relays nothing: exit 2, saying that nothing was delivered', async () => {
      const c = await benchCreds(pki.dir, 0);
      const sink = tls.createServer({ key: c.key, cert: c.cert, ca: c.ca, requestCert: true, rejectUnauthorized: true }, (sock) => { sock.resume(); sock.on('error', () => {}); });
      await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
      try {
        const r = await runLoadRaw([...common((sink.address() as net.AddressInfo).port), ...noSettle, '--warmup', '0', '--confirm', '0.3']);
        assert.equal(r.code, 2, r.err);
        assert.match(r.err, /none delivered/);
        const res = JSON.parse(r.out) as LoadResult;
        assert.equal(res.steps[0].received, 0);
        assert.equal(res.problems.length, 1);
      } finally {
        sink.close();
      }
    });

    it('clients the server closes in a step (its --idle-timeout, no pings) fail the run; with pings they stay', async () => {
      const args = ['--port', String(quiet.port), '--certs-dir', pki.dir, '--certs', '2', '-n', '3', '-s', '1', '-r', '1', '-d', '3', '--grace', '0.5', ...noSettle, '--warmup', '0', '--hold', '0', '-q'];
      const closed = await runLoadRaw([...args, '--ping', '0']);
      assert.equal(closed.code, 2, closed.err);
      assert.match(closed.err, /step 1: \d of 3 clients were closed during the step/);
      assert.ok((JSON.parse(closed.out) as LoadResult).steps[0].closed >= 2, 'the receivers, at least');
      const pinged = await runLoad([...args, '--ping', '0.5']);
      assert.equal(pinged.steps[0].closed, 0);
      assert.deepEqual(pinged.problems, []);
    });

    it('a /metrics that wants a token: unknown without it (not 0), read with --metrics-token', async () => {
      const url = `http://127.0.0.1:${quiet.metricsPort}/metrics`;
      const args = ['--port', String(quiet.port), '--certs-dir', pki.dir, '--certs', '2', '-n', '3', '-s', '1', '-r', '20', '-d', '1', '--grace', '1', ...noSettle, '--warmup', '0', '--ping', '0.5', '--metrics-url', url];
      const without = await runLoadRaw(args);
      assert.equal(without.code, 0, without.err);
      assert.match(without.err, /answered 401 .*--metrics-token/);
      const w = JSON.parse(without.out) as LoadResult;
      assert.equal(w.steps[0].serverDrops, null, 'unknown (NaN, null in JSON), not 0');
      assert.equal(w.steps[0].serverDropsByReason, null);
      const withToken = await runLoad([...args, '--metrics-token', 'bench-token']);
      assert.equal(withToken.steps[0].serverDrops, 0);
      assert.ok(withToken.steps[0].serverP99Ms > 0, 'the server\'s own latency, read with the token');
    });
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
