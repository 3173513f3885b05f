// Issue 3: the server end to end over real mutual TLS with certificates from our own PKI.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { testPki, type SharedPki as TestPki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { CotClient, sa, ping, sleep } from '../helpers/client.ts';
import { tempDir } from '../helpers/tmp.ts';

describe('e2e: mutual-TLS CoT server', function () {
  let pki: TestPki;
  let srv: TestServer;
  let short: TestServer;
  const clients: CotClient[] = [];
  const connect = async (name: string): Promise<CotClient> => {
    const c = await CotClient.connect(srv.port, await pki.client(name));
    clients.push(c);
    return c;
  };

  before(async function () {
    this.timeout(60000);
    pki = await testPki();
    srv = await startTestServer(pki.dir);
    // short timeouts on a server of their own: under CI load they must not hit the other tests
    short = await startTestServer(pki.dir, { handshakeTimeout: '1500', idleTimeout: '1500' });
  });
  afterEach(() => { while (clients.length) clients.pop()!.close(); });
  after(async () => { await srv?.stop(); await short?.stop(); });

  it('two clients exchange events both ways and never get their own back', async () => {
    const a = await connect('alpha');
    const b = await connect('bravo');
    await sleep(50);
    a.send(sa('uid-alpha', 'ALPHA'));
    b.send(sa('uid-bravo', 'BRAVO'));
    await b.waitFor((f) => f.some((x) => x.includes('uid="uid-alpha"')), 5000, 'alpha SA at bravo');
    await a.waitFor((f) => f.some((x) => x.includes('uid="uid-bravo"')), 5000, 'bravo SA at alpha');
    await sleep(100);
    assert.equal(a.cot().filter((x) => x.includes('uid="uid-alpha"')).length, 0, 'alpha got its own event');
    assert.equal(b.cot().filter((x) => x.includes('uid="uid-bravo"')).length, 0, 'bravo got its own event');
    // the event passes through byte for byte (no marti to strip)
    const sent = sa('uid-alpha2', 'ALPHA2');
    a.send(sent);
    await b.waitFor((f) => f.some((x) => x.includes('uid="uid-alpha2"')));
    const got = b.cot().find((x) => x.includes('uid="uid-alpha2"'))!;
    assert.equal(got, sent.slice(sent.indexOf('<event')));
  });

  it('events written one byte at a time and several per write arrive intact', async () => {
    const a = await connect('alpha');
    const b = await connect('bravo');
    await sleep(50);
    const one = Buffer.from(sa('bytewise', 'BYTES'));
    for (let i = 0; i < one.length; i++) {
      a.sock.write(one.subarray(i, i + 1));
      if (i % 97 === 0) await sleep(1);
    }
    const batch = [1, 2, 3, 4, 5].map((i) => sa(`batch-${i}`, `B${i}`)).join('\n  \n');
    a.send(batch);
    await b.waitFor((f) => f.filter((x) => /uid="(bytewise|batch-\d)"/.test(x)).length >= 6, 5000, 'six events');
    const got = b.cot().filter((x) => /uid="(bytewise|batch-\d)"/.test(x));
    assert.equal(got.length, 6);
    assert.equal(got[0], one.toString().slice(one.indexOf('<event')));
    for (const f of got) assert.match(f, /^<event[\s\S]*<\/event>$/);
  });

  it('a ping gets exactly one pong and no other client sees it', async () => {
    const a = await connect('alpha');
    const b = await connect('bravo');
    await sleep(50);
    a.send(ping('alpha-ping'));
    await a.waitFor((f) => f.some((x) => x.includes('t-x-c-t-r')), 5000, 'pong');
    await sleep(200);
    const pongs = a.cot().filter((x) => x.includes('t-x-c-t-r'));
    assert.equal(pongs.length, 1);
    assert.match(pongs[0], /uid="takPong"/);
    assert.match(pongs[0], /how="h-g-i-g-o"/);
    assert.match(pongs[0], /<point [^>]*ce="9999999(\.0)?"/);
    const m = /time="([^"]+)"[^>]*stale="([^"]+)"/.exec(pongs[0])!;
    assert.equal(Date.parse(m[2]) - Date.parse(m[1]), 20000);
    assert.equal(b.cot().filter((x) => x.includes('t-x-c-t')).length, 0, 'ping or pong leaked to another client');
  });

  it('a client without a certificate never receives CoT and is counted as no_cert', async () => {
    const before = await srv.metric('cot_handshakes_total', { result: 'no_cert' });
    const c = await CotClient.connect(srv.port, { ca: pki.ca }).catch(() => null);
    // TLS 1.3: the client may think it connected before the server's rejection arrives
    if (c) { clients.push(c); c.send(sa('intruder', 'X')); await c.waitClosed(5000); assert.equal(c.frames.length, 0); }
    await waitMetric(srv, 'cot_handshakes_total', { result: 'no_cert' }, before + 1);
  });

  it('a client whose certificate comes from another CA never receives CoT and is counted as bad_cert', async function () {
    // a function, not an arrow: in an arrow `this` is the suite, and changing the suite's timeout
    // mid-run re-arms the timers of tests that already passed (they fail 60 s later)
    this.timeout(60000);
    const foreign = await testPki('foreign');
    const creds = await foreign.client('mallory');
    const before = await srv.metric('cot_handshakes_total', { result: 'bad_cert' });
    const c = await CotClient.connect(srv.port, { ...creds, ca: pki.ca }).catch(() => null);
    if (c) { clients.push(c); c.send(sa('mallory', 'M')); await c.waitClosed(5000); assert.equal(c.frames.length, 0); }
    await waitMetric(srv, 'cot_handshakes_total', { result: 'bad_cert' }, before + 1);
    // the refusal names the certificate the client came with, not just its address
    const refused = srv.logs.filter((l) => l.audit === 'refused' && l.reason === 'bad_cert' && l.cn === 'mallory');
    assert.equal(refused.length, 1, `refusal not logged with the client's identity: ${JSON.stringify(srv.logs.filter((l) => l.audit === 'refused'))}`);
    assert.match(String(refused[0].serial), /^[0-9a-f]+$/);
    assert.notEqual(refused[0].issuer, undefined);
    assert.match(String(refused[0].remote), /^127\.0\.0\.1:\d+$/);
  });

  it('a TCP connection that never starts the handshake is closed after the handshake timeout', async () => {
    const before = await short.metric('cot_handshakes_total', { result: 'timeout' });
    const t0 = Date.now();
    const sock = net.connect(short.port, '127.0.0.1');
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.once('close', () => r()));
    const took = Date.now() - t0;
    assert.ok(took >= 1400 && took < 6000, `closed after ${took} ms (timeout 1500 ms)`);
    await waitMetric(short, 'cot_handshakes_total', { result: 'timeout' }, before + 1);
  });

  it('an authenticated client that stays silent is closed after the idle timeout', async () => {
    const a = await CotClient.connect(short.port, await pki.client('alpha'));
    clients.push(a);
    const t0 = Date.now();
    await a.waitClosed(8000);
    const took = Date.now() - t0;
    assert.ok(took >= 1300 && took < 6000, `closed after ${took} ms (idle timeout 1500 ms)`);
    assert.ok(short.logs.some((l) => l.audit === 'closed' && l.reason === 'idle'));
  });

  it('a client whose latest SA is still valid is not idle: closed at its stale time, not before (ATAK reports every 180 s when stationary)', async function () {
    this.timeout(20000);
    // ATAK on a TCP stream: a stationary device sends its SA every 180 s (stale 375 s) and pings
    // only when it has heard nothing for 15 s — on a busy server it sends nothing in between
    const a = await CotClient.connect(short.port, await pki.client('alpha'));
    const b = await CotClient.connect(short.port, await pki.client('bravo'));
    clients.push(a, b);
    await sleep(50);
    const t0 = Date.now();
    a.send(sa('uid-stationary', 'STATIONARY', { staleSec: 4 }));
    b.send(sa('uid-stale', 'STALE', { staleSec: -60 }));
    await b.waitClosed(8000);
    const tookB = Date.now() - t0;
    assert.ok(tookB >= 1300 && tookB < 3500, `the client with a stale SA closed after ${tookB} ms (idle timeout 1500 ms)`);
    assert.equal(a.closed, false, 'closed while its SA was valid');
    await a.waitClosed(8000);
    const tookA = Date.now() - t0;
    assert.ok(tookA >= 3800 && tookA < 7000, `closed after ${tookA} ms (SA stale after 4000 ms)`);
    assert.equal(short.logs.filter((l) => l.audit === 'closed' && l.reason === 'idle' && l.uid === 'uid-stationary').length, 1);
  });

  it('counts connections and events in /metrics and writes one accept and one close line per connection', async () => {
    const a = await connect('alpha');
    const b = await connect('bravo');
    await sleep(50);
    assert.equal(await srv.metric('cot_connections'), 2);
    const recv0 = await srv.metric('cot_events_received_total');
    const deliv0 = await srv.metric('cot_events_delivered_total');
    const [sent0, in0, bBytes0] = [await srv.metric('cot_bytes_sent_total'), await srv.metric('cot_bytes_received_total'), b.bytes];
    const ev = sa('m-alpha', 'MA');
    a.send(ev);
    await b.waitFor((f) => f.some((x) => x.includes('m-alpha')));
    assert.equal(await srv.metric('cot_events_received_total'), recv0 + 1);
    assert.ok(await srv.metric('cot_bytes_received_total') - in0 >= Buffer.byteLength(ev), 'bytes received');
    assert.ok(await srv.metric('cot_bytes_sent_total') - sent0 >= b.bytes - bBytes0 && b.bytes > bBytes0, 'bytes sent');
    assert.ok((await srv.metric('cot_events_delivered_total')) >= deliv0 + 1);
    const sid = srv.logs.find((l) => l.audit === 'accepted' && l.cn === 'alpha' && l.sid !== undefined && !srv.logs.some((c) => c.audit === 'closed' && c.sid === l.sid))!.sid;
    await sleep(20); // the latency of alpha's SA is recorded after its write
    const latency0 = await srv.metric('cot_delivery_latency_seconds_count');
    a.close();
    await waitFor(() => srv.logs.some((l) => l.audit === 'closed' && l.sid === sid));
    // bravo gets alpha's disconnect notice: a delivery, but made by the server, not a client's event
    await b.waitFor((f) => f.some((x) => x.includes('t-x-d-d') && x.includes('m-alpha')));
    await sleep(20);
    assert.equal(await srv.metric('cot_delivery_latency_seconds_count'), latency0, 'the latency histogram counts only events read from clients');
    assert.equal(srv.logs.filter((l) => l.audit === 'accepted' && l.sid === sid).length, 1);
    const closed = srv.logs.filter((l) => l.audit === 'closed' && l.sid === sid);
    assert.equal(closed.length, 1);
    assert.equal(closed[0].cn, 'alpha');
    assert.match(String(closed[0].serial), /^[0-9a-f]+$/);
    assert.equal(closed[0].eventsIn, 1);
    b.close();
  });

  it('--tcp-port, the opt-in plaintext listener: said loudly at start; its clients and TLS clients see each other', async () => {
    const plain = await startTestServer(pki.dir, { tcpPort: '0' });
    let sock: net.Socket | undefined;
    try {
      const port = plain.server.tcpPort;
      assert.ok(port > 0);
      assert.ok(plain.logs.some((l) => l.audit === 'plaintext' && l.port === port && Number(l.level) === 40), 'the warning');
      sock = net.connect(port, '127.0.0.1');
      let got = '';
      sock.on('data', (d: Buffer) => { got += d.toString(); });
      await new Promise((r) => sock!.once('connect', r));
      const t = await CotClient.connect(plain.port, await pki.client('alpha'));
      clients.push(t);
      await sleep(100);
      sock.write(sa('uid-plain', 'PLAIN'));
      await t.waitFor((f) => f.some((x) => x.includes('uid="uid-plain"')), 5000, 'plaintext SA at the TLS client');
      t.send(sa('uid-tls', 'TLS'));
      const deadline = Date.now() + 5000;
      while (!got.includes('uid="uid-tls"') && Date.now() < deadline) await sleep(20);
      assert.ok(got.includes('uid="uid-tls"'), 'TLS SA at the plaintext client');
      const acc = plain.logs.filter((l) => l.audit === 'accepted');
      assert.ok(acc.some((l) => l.plaintext === true), JSON.stringify(acc));
    } finally {
      sock?.destroy();
      await plain.stop();
    }
  });

  it('a CA certificate given in DER (a .cer as Windows exports it) trusts as its PEM does', async () => {
    const der = join(tempDir('der'), 'ca.cer');
    writeFileSync(der, new X509Certificate(readFileSync(join(pki.dir, 'ca.pem'))).raw);
    const s2 = await startTestServer(pki.dir, { ca: der });
    try {
      const c = await CotClient.connect(s2.port, await pki.client('alpha'));
      clients.push(c);
      c.send(ping('der-ping'));
      await c.waitFor((f) => f.some((x) => x.includes('t-x-c-t-r')), 5000, 'pong');
      assert.equal(await s2.metric('cot_handshakes_total', { result: 'ok' }), 1);
    } finally {
      await s2.stop();
    }
  });

  it('negotiates TLS 1.2 or newer only', async () => {
    const creds = await pki.client('alpha');
    const err = await new Promise<Error | null>((resolve) => {
      // SECLEVEL=0: else our own client refuses TLS 1.1 before the server is asked
      const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca: readFileSync(creds.ca), cert: readFileSync(creds.cert), key: readFileSync(creds.key), servername: 'localhost', maxVersion: 'TLSv1.1', minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' });
      s.on('secureConnect', () => { s.destroy(); resolve(null); });
      s.on('error', (e) => resolve(e));
    });
    // the server's refusal: its protocol_version alert
    assert.match(String(err?.message), /alert protocol version/, 'a TLS 1.1 handshake was not refused by the server');
  });

  it('TLS 1.2 only with forward secrecy and AEAD suites; no renegotiation', async () => {
    const creds = await pki.client('alpha');
    const opts = { host: '127.0.0.1', port: srv.port, ca: readFileSync(creds.ca), cert: readFileSync(creds.cert), key: readFileSync(creds.key), servername: 'localhost', maxVersion: 'TLSv1.2' as const };
    const suite = (ciphers: string) => new Promise<string>((resolve) => {
      const s = tls.connect({ ...opts, ciphers });
      s.on('secureConnect', () => { resolve(s.getCipher().standardName); s.destroy(); });
      s.on('error', (e) => resolve(`refused: ${e.message}`));
    });
    // static RSA key exchange (no forward secrecy), CBC with SHA-1: Node's defaults accept both
    for (const weak of ['AES128-SHA', 'AES256-GCM-SHA384', 'ECDHE-RSA-AES128-SHA']) assert.match(await suite(weak), /^refused/, weak);
    for (const ok of ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']) assert.match(await suite(ok), /^TLS_ECDHE_RSA_WITH_/, ok);
    // refused: an error, or (OpenSSL's answer is a warning alert) no answer at all
    const renegotiated = await new Promise<string>((resolve) => {
      const s = tls.connect(opts);
      s.on('error', () => undefined);
      s.once('secureConnect', () => {
        const t = setTimeout(() => { resolve('no answer'); s.destroy(); }, 2000);
        s.renegotiate({}, (err) => { clearTimeout(t); resolve(err ? `refused: ${err.message}` : 'renegotiated'); s.destroy(); });
      });
    });
    assert.notEqual(renegotiated, 'renegotiated');
  });

  it('resumes no session: every connection presents its certificate anew', async () => {
    const creds = await pki.client('alpha');
    const connect = (version: tls.SecureVersion, session?: Buffer) => new Promise<{ reused: boolean; session?: Buffer }>((resolve) => {
      let got: Buffer | undefined;
      const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca: readFileSync(creds.ca), cert: readFileSync(creds.cert), key: readFileSync(creds.key), servername: 'localhost', minVersion: version, maxVersion: version, session });
      s.on('session', (b: Buffer) => { got = b; });
      s.on('error', () => undefined);
      // the server's first bytes (the announcement) come after any TLS 1.3 ticket
      s.once('data', () => setTimeout(() => { const reused = s.isSessionReused(); s.destroy(); resolve({ reused, session: got }); }, 200));
    });
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      const first = await connect(version);
      if (!first.session) continue; // nothing offered to resume
      assert.equal((await connect(version, first.session)).reused, false, `${version}: a session was resumed`);
    }
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

async function waitMetric(srv: TestServer, name: string, labels: Record<string, string>, atLeast: number): Promise<void> {
  const deadline = Date.now() + 5000;
  let v = 0;
  while ((v = await srv.metric(name, labels)) < atLeast) {
    if (Date.now() > deadline) throw new Error(`${name}${JSON.stringify(labels)} = ${v}, expected >= ${atLeast}`);
    await sleep(50);
  }
}
