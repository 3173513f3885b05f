// Issue 8: the audit trail. The log stream of a real `cotstream start` process holds exactly one
// accept and one close line per connection, with certificate CN, serial and remote address, one
// line per refusal with its reason, and nothing secret. Episodes (rate limit, slow consumer) are
// logged once each (drops less than a second apart are one episode), however many events they drop; per-event lines exist only at debug level.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { makePki, testPki, type TestPki, type SharedPki } from '../helpers/pki.ts';
import { spawnServer, startTestServer, ROOT, type TestServer } from '../helpers/server.ts';
import { CotClient, sa, chat, sleep } from '../helpers/client.ts';
import { freePort } from '../helpers/net.ts';
import { canonicalSerial } from '../../src/auth/serial.ts';
import { LogLimiter, MAX_LOG_FIELD } from '../../src/ops/log.ts';
import { capturedLogger } from '../helpers/session.ts';

type Line = Record<string, unknown>;
const TOKEN = 'audit-test-metrics-token-7d1e';

const serialOf = (certFile: string): string => canonicalSerial(new X509Certificate(fs.readFileSync(certFile)).serialNumber);

async function until(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Strings that must never reach a log line: key material, passwords, the metrics token. */
function secretsOf(pki: TestPki): string[] {
  const out = [TOKEN, 'PRIVATE KEY'];
  for (const f of [pki.paths.key, pki.paths.caKey, ...Object.values(pki.clients).map((c) => c.key)]) {
    // a 40-character run from the middle of each key's base64 body
    const body = fs.readFileSync(f, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    out.push(body.slice(100, 140));
  }
  for (const c of Object.values(pki.clients)) out.push(c.password);
  return out;
}

describe('ops: audit log of a real process', function () {
  this.timeout(60000);
  let pki: TestPki;
  before(async function () {
    this.timeout(60000);
    pki = await makePki(['alpha', 'bravo', 'charlie']);
    // charlie is revoked with the real CLI before the server starts
    execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli.ts'), 'revoke', pki.clients.charlie.cert, '--certs-dir', pki.dir, '--reason', 'key_compromise'], { cwd: ROOT, stdio: 'pipe', timeout: 20000 });
  });
  after(() => pki?.cleanup());

  it('one accept and one close line per connection with CN, serial and remote; refusals with reason; no secret', async () => {
    const srv = await spawnServer(['--certs-dir', pki.dir], { COTSTREAM_METRICS_TOKEN: TOKEN });
    let raw = '';
    srv.proc.stdout!.on('data', (d: Buffer) => { raw += d.toString(); });
    const creds = (n: string) => ({ cert: pki.clients[n].cert, key: pki.clients[n].key, ca: pki.paths.ca });
    try {
      const a = await CotClient.connect(srv.port, creds('alpha'));
      const b = await CotClient.connect(srv.port, creds('bravo'));
      await until(() => srv.lines.filter((l) => l.audit === 'accepted').length === 2, 5000, 'two accepts');
      a.send(sa('audit-alpha', 'AUDIT-A'));
      for (let i = 0; i < 5; i++) a.send(chat('audit-alpha', `audit ${i}`));
      await b.waitFor((f) => f.filter((x) => x.includes('audit ')).length === 5);
      a.close();
      // alpha again: a second connection of the same certificate is a second pair of lines
      const a2 = await CotClient.connect(srv.port, creds('alpha'));
      a2.send(sa('audit-alpha', 'AUDIT-A'));
      await b.waitFor((f) => f.filter((x) => x.includes('audit-alpha')).length >= 2);
      // refused: no certificate, and the revoked charlie
      await new Promise<void>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca: fs.readFileSync(pki.paths.ca), servername: 'localhost' });
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.on('data', () => assert.fail('a client without a certificate received data'));
      });
      const c = await CotClient.connect(srv.port, creds('charlie')).catch(() => null);
      if (c) await c.waitClosed();
      await until(() => srv.lines.filter((l) => l.audit === 'refused').length >= 2, 5000, 'refused lines');
      b.close();
      await until(() => srv.lines.filter((l) => l.audit === 'closed').length >= 2, 5000, 'close lines');
      a2.close();
      await until(() => srv.lines.filter((l) => l.audit === 'closed').length >= 3, 5000, 'close lines');
    } finally {
      assert.equal(await srv.stop(), 0, srv.stderr);
    }
    const lines = srv.lines;

    const accepted = lines.filter((l) => l.audit === 'accepted');
    const closed = lines.filter((l) => l.audit === 'closed');
    assert.equal(accepted.length, 3, JSON.stringify(accepted));
    assert.equal(closed.length, 3, JSON.stringify(closed));
    const expectSerial: Record<string, string> = { alpha: serialOf(pki.clients.alpha.cert), bravo: serialOf(pki.clients.bravo.cert) };
    for (const acc of accepted) {
      const mine = closed.filter((c) => c.sid === acc.sid);
      assert.equal(mine.length, 1, `connection ${acc.sid}: ${mine.length} close lines`);
      for (const l of [acc, mine[0]]) {
        assert.ok(l.cn === 'alpha' || l.cn === 'bravo', JSON.stringify(l));
        assert.equal(l.serial, expectSerial[l.cn as string]);
        assert.match(String(l.remote), /^127\.0\.0\.1:\d+$/);
        assert.equal(l.level, 30);
        assert.ok(typeof l.time === 'string' && typeof l.msg === 'string');
      }
      const c = mine[0];
      for (const k of ['durationMs', 'eventsIn', 'eventsOut', 'bytesIn', 'bytesOut']) assert.equal(typeof c[k], 'number', `${k} in ${JSON.stringify(c)}`);
    }
    assert.deepEqual(accepted.map((l) => l.cn).sort(), ['alpha', 'alpha', 'bravo']);
    const firstAlpha = closed.find((c) => c.cn === 'alpha' && c.eventsIn === 6);
    assert.ok(firstAlpha, `the first alpha session sent 6 events: ${JSON.stringify(closed)}`);
    assert.ok((firstAlpha.bytesIn as number) > 1000);
    const bravo = closed.find((c) => c.cn === 'bravo')!;
    assert.ok((bravo.eventsOut as number) >= 7 && (bravo.bytesOut as number) > 1000, JSON.stringify(bravo));

    const identified = lines.filter((l) => l.audit === 'identified');
    assert.equal(identified.length, 2);
    for (const l of identified) {
      assert.equal(l.uid, 'audit-alpha');
      assert.equal(l.callsign, 'AUDIT-A');
      assert.equal(l.cn, 'alpha');
      assert.equal(l.serial, expectSerial.alpha);
    }

    const refused = lines.filter((l) => l.audit === 'refused');
    assert.equal(refused.length, 2, JSON.stringify(refused));
    const noCert = refused.find((l) => l.reason === 'no_cert')!;
    assert.ok(noCert, JSON.stringify(refused));
    assert.match(String(noCert.remote), /^127\.0\.0\.1:\d+$/);
    assert.equal(noCert.code, undefined, 'no verification code for a certificate that was never sent');
    const revoked = refused.find((l) => l.reason === 'revoked')!;
    assert.ok(revoked, JSON.stringify(refused));
    assert.equal(revoked.cn, 'charlie');
    assert.equal(revoked.serial, serialOf(pki.clients.charlie.cert));
    assert.match(String(revoked.remote), /^127\.0\.0\.1:\d+$/);

    // nothing secret anywhere in the stream, and the token shows only as "set"
    const text = raw + JSON.stringify(lines);
    for (const s of secretsOf(pki)) assert.ok(!text.includes(s), `the log contains a secret (${s.slice(0, 12)}…)`);
    const start = lines.find((l) => l.audit === 'start') as { config: Record<string, unknown> };
    assert.equal(start.config.metricsToken, '[set]');
    // which key file was loaded is shown (a path, no secret), under a name the redact list leaves alone
    assert.match(String(start.config.keyFile), /server\.key$/);
    assert.equal(start.config.key, undefined);
    // per-event lines only at debug level: the default (info) has none
    assert.equal(lines.filter((l) => l.msg === 'event').length, 0);
    assert.ok(lines.every((l) => (l.level as number) >= 30));
  });

  it('a Redis password never reaches the log, in the user info (even with a raw @) or in the query (?password=)', async () => {
    // ioredis takes its options from the URL query too: `?password=` is as secret as the user info.
    // Nothing listens on the port: the node starts anyway and logs the bus as down, URL included.
    const port = await freePort();
    const url = `redis://ops:p@ss-in-userinfo-9c1@127.0.0.1:${port}/0?password=pw-in-query-4b7&db=0`;
    const srv = await spawnServer(['--certs-dir', pki.dir], { COTSTREAM_REDIS_URL: url });
    let raw = '';
    srv.proc.stdout!.on('data', (d: Buffer) => { raw += d.toString(); });
    await srv.stop();
    const text = raw + JSON.stringify(srv.lines) + srv.stderr;
    for (const secret of ['ss-in-userinfo-9c1', 'pw-in-query-4b7', 'ops:']) assert.ok(!text.includes(secret), `the log contains "${secret}"`);
    const start = srv.lines.find((l) => l.audit === 'start') as { config: Record<string, unknown> };
    assert.equal(start.config.redis, `redis://[redacted]@127.0.0.1:${port}/0?password=[redacted]&db=0`);
    const down = srv.lines.find((l) => l.audit === 'bus' && l.state === 'down');
    assert.ok(down, 'the bus-down line was logged');
    assert.equal(down.redis, start.config.redis);
  });
});

describe('ops: audit episodes and log level (in-process)', function () {
  this.timeout(30000);
  let pki: SharedPki;
  let srv: TestServer | null = null;
  const clients: CotClient[] = [];
  before(async () => { pki = await testPki(); });
  afterEach(async () => {
    while (clients.length) clients.pop()!.close();
    await srv?.stop();
    srv = null;
  });
  /** connected and registered by the server (a TLS 1.3 client may send before the server has it) */
  const connect = async (name: string): Promise<CotClient> => {
    const before = srv!.logs.filter((l) => l.audit === 'accepted').length;
    const c = await CotClient.connect(srv!.port, await pki.client(name));
    clients.push(c);
    await until(() => srv!.logs.filter((l) => l.audit === 'accepted').length > before, 5000, `accept of ${name}`);
    return c;
  };
  const sidOf = async (cn: string): Promise<unknown> => {
    await until(() => srv!.logs.some((l) => l.audit === 'accepted' && l.cn === cn), 5000, `accept of ${cn}`);
    return srv!.logs.filter((l) => l.audit === 'accepted' && l.cn === cn).at(-1)!.sid;
  };

  it('a client whose handshake finishes while the server stops gets a refused line, not silence', async () => {
    srv = await startTestServer(pki.dir);
    const creds = await pki.client('alpha');
    // TCP accepted before stop(); the TLS handshake over it completes after stop() began
    const raw = net.connect(srv.port, '127.0.0.1');
    await new Promise<void>((r, j) => { raw.once('connect', () => r()); raw.once('error', j); });
    await sleep(50);
    const stopped = srv.stop();
    const sock = tls.connect({ socket: raw, servername: 'localhost', ca: fs.readFileSync(creds.ca), cert: fs.readFileSync(creds.cert), key: fs.readFileSync(creds.key) });
    sock.on('error', () => { /* closed by the server */ });
    await new Promise<void>((r) => sock.once('close', () => r()));
    await stopped;
    const logs = srv.logs;
    srv = null;
    const line = logs.find((l) => l.audit === 'refused' && l.reason === 'shutdown');
    assert.ok(line, 'a refused line with reason shutdown');
    assert.equal(line.cn, 'alpha');
    assert.match(String(line.serial), /^[0-9a-f]+$/);
    assert.equal(logs.filter((l) => l.audit === 'accepted').length, 0);
  });

  it('a device that does not trust the server, and one that hangs up mid-handshake: counted as error (not bad_cert), each line saying what happened', async () => {
    srv = await startTestServer(pki.dir);
    const creds = await pki.client('alpha');
    const errors0 = await srv.metric('cot_handshakes_total', { result: 'error' });
    // a device whose truststore holds another CA: it refuses our certificate (a TLS alert)
    const foreign = await makePki(['x']);
    try {
      // OpenSSL's client says why, with an alert (as Java's and ATAK's do); a child process, as
      // the server runs in this one
      const out = await new Promise<string>((resolve) => {
        const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${srv!.port}`, '-servername', 'localhost', '-CAfile', foreign.paths.ca,
          '-cert', creds.cert, '-key', creds.key, '-verify_return_error'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let text = '';
        p.stdout.on('data', (d: Buffer) => { text += d; });
        p.stderr.on('data', (d: Buffer) => { text += d; });
        p.on('close', () => resolve(text));
      });
      assert.match(out, /verify error|certificate verify failed/i, 'openssl refused our certificate');
      await until(() => srv!.logs.filter((l) => l.audit === 'refused').length >= 1, 5000, 'its line');
      // Node's client closes without one
      await new Promise<void>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port: srv!.port, servername: 'localhost', ca: fs.readFileSync(foreign.paths.ca), cert: fs.readFileSync(creds.cert), key: fs.readFileSync(creds.key) });
        s.on('error', () => resolve());
        s.on('secureConnect', () => assert.fail('trusted a server certificate of another CA'));
      });
    } finally {
      foreign.cleanup();
    }
    // TCP connected, a ClientHello started, then gone
    const raw = net.connect(srv.port, '127.0.0.1');
    await new Promise<void>((r, j) => { raw.once('connect', () => r()); raw.once('error', j); });
    raw.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xf0, 0x01]));
    await sleep(50);
    raw.resetAndDestroy();
    await until(() => srv!.logs.filter((l) => l.audit === 'refused').length >= 3, 5000, 'three lines');
    const [alert, ...lines] = srv.logs.filter((l) => l.audit === 'refused');
    assert.equal(alert.reason, 'error');
    assert.match(String(alert.err), /alert unknown ca/);
    assert.match(String(alert.msg), /^TLS handshake failed: the client refused it with a TLS alert .*truststore/);
    assert.deepEqual(lines.map((l) => l.reason), ['error', 'error']);
    for (const l of lines) {
      assert.match(String(l.msg), /^TLS handshake not completed: the client closed the connection .*truststore/, JSON.stringify(l));
      assert.match(String(l.remote), /^127\.0\.0\.1:\d+$/);
    }
    assert.equal(await srv.metric('cot_handshakes_total', { result: 'error' }), errors0 + 3, 'counted as handshake errors');
  });

  it('rate limiting is logged once per episode while every dropped event is counted', async () => {
    srv = await startTestServer(pki.dir, { rateEvents: '5', rateBurst: '5' });
    const a = await connect('alpha');
    const b = await connect('bravo');
    const sid = await sidOf('alpha');
    const burst = (tag: string) => Array.from({ length: 40 }, (_, i) => chat('rl-alpha', `${tag} ${i}`)).join('');
    a.send(burst('first'));
    await until(() => srv!.logs.some((l) => l.audit === 'rate_limit' && l.sid === sid), 5000, 'rate_limit line');
    await b.waitFor((f) => f.filter((x) => x.includes('first ')).length >= 5);
    await sleep(100);
    const dropped1 = await srv.metric('cot_events_dropped_total', { reason: 'rate_limit' });
    assert.ok(dropped1 >= 30, `dropped ${dropped1}`);
    assert.equal(srv.logs.filter((l) => l.audit === 'rate_limit' && l.sid === sid).length, 1);
    // drops more than a second apart are a new episode: one more line
    await sleep(1500);
    a.send(burst('second'));
    await until(() => srv!.logs.filter((l) => l.audit === 'rate_limit' && l.sid === sid).length === 2, 5000, 'second episode');
    await sleep(100);
    assert.equal(srv.logs.filter((l) => l.audit === 'rate_limit' && l.sid === sid).length, 2);
    assert.ok((await srv.metric('cot_events_dropped_total', { reason: 'rate_limit' })) >= dropped1 + 30);
    const line = srv.logs.find((l) => l.audit === 'rate_limit' && l.sid === sid)!;
    assert.equal(line.cn, 'alpha');
    assert.match(String(line.serial), /^[0-9a-f]+$/);
  });

  it('a slow consumer is logged once per episode while its drops are counted', async () => {
    srv = await startTestServer(pki.dir, { rateEvents: '0', rateBytes: '0', maxSendBuffer: '65536', slowConsumerTimeout: '60000' });
    const a = await connect('alpha');
    const b = await connect('bravo');
    const sid = await sidOf('bravo');
    b.sock.pause(); // bravo stops reading; the kernel buffers fill, then the server's limit
    const pad = 'x'.repeat(900);
    const batch = Array.from({ length: 200 }, (_, i) => chat('slow-alpha', `${pad} ${i}`)).join('');
    for (let i = 0; i < 100 && (await srv.metric('cot_events_dropped_total', { reason: 'slow_consumer' })) < 100; i++) {
      a.send(batch);
      await sleep(30);
    }
    const dropped = await srv.metric('cot_events_dropped_total', { reason: 'slow_consumer' });
    assert.ok(dropped >= 100, `dropped ${dropped}`);
    assert.equal(srv.logs.filter((l) => l.audit === 'slow_consumer' && l.sid === sid).length, 1);
    const line = srv.logs.find((l) => l.audit === 'slow_consumer')!;
    assert.equal(line.cn, 'bravo');
    assert.equal(line.level, 40);
  });

  it('at debug level every routed event has one log line; at info none', async () => {
    srv = await startTestServer(pki.dir, { logLevel: 'debug' });
    const a = await connect('alpha');
    const b = await connect('bravo');
    for (let i = 0; i < 3; i++) a.send(chat('dbg-alpha', `dbg ${i}`));
    await b.waitFor((f) => f.filter((x) => x.includes('dbg ')).length === 3);
    await sleep(50);
    const events = srv.logs.filter((l) => l.msg === 'event' && l.cn === 'alpha');
    assert.equal(events.length, 3, JSON.stringify(events));
    assert.equal(events[0].level, 20);
    assert.equal(events[0].type, 'b-t-f');
    await srv.stop();

    srv = await startTestServer(pki.dir, { logLevel: 'info' });
    const a2 = await connect('alpha');
    const b2 = await connect('bravo');
    for (let i = 0; i < 3; i++) a2.send(chat('dbg-alpha', `info ${i}`));
    await b2.waitFor((f) => f.filter((x) => x.includes('info ')).length === 3);
    assert.equal(srv.logs.filter((l) => l.msg === 'event').length, 0);
    assert.ok(srv.logs.every((l) => (l.level as number) >= 30));
  });
});

describe('ops: log lines stay bounded', () => {
  it('a string field a client chose (a 1-MB callsign) is clipped, saying by how much; the caller\'s object is left alone', async () => {
    const { log, lines } = capturedLogger();
    const fields = { audit: 'identified', uid: 'u'.repeat(1_000_000), callsign: 'short' };
    log.info(fields, 'client identified');
    await sleep(20);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.uid, `${'u'.repeat(MAX_LOG_FIELD)}…[${1_000_000 - MAX_LOG_FIELD} more characters]`);
    assert.equal(lines[0]!.callsign, 'short');
    assert.equal(fields.uid.length, 1_000_000);
  });

  it('refusal lines: 20 a second, and the count of the rest is reported when the second ends, not only at the next refusal', async () => {
    const { log, lines } = capturedLogger();
    const limited = new LogLimiter(log);
    let allowed = 0;
    for (let i = 0; i < 25; i++) if (limited.allow()) allowed++;
    assert.equal(allowed, 20);
    await sleep(1200); // nothing more is refused
    assert.deepEqual(lines.filter((l) => l.audit === 'suppressed').map((l) => l.count), [5]);
    assert.ok(limited.allow(), 'a new second');
  });
});
