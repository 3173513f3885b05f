// The short version of the soak run (bench/soak/run.ts): a real server process, real TLS, a few
// hundred clients connecting and leaving in every way a field deployment sees, then nothing may
// be left behind: no session, no cached SA, no open file, no map entry. (The long run reports
// RSS, heap and every internal map over minutes; see bench/README.md.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { spawnServer, metricValue, type SpawnedServer } from '../helpers/server.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';

const fdsOf = (pid: number): number => fs.readdirSync(`/proc/${pid}/fd`).length;

interface Creds { cert: Buffer; key: Buffer; ca: Buffer }

function connect(port: number, c: Partial<Creds> & { ca: Buffer }, read = true): Promise<{ raw: net.Socket; sock: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port });
    raw.on('error', () => {});
    const sock = tls.connect({ socket: raw, servername: 'localhost', ca: c.ca, cert: c.cert, key: c.key });
    sock.on('error', () => {});
    if (read) sock.on('data', () => {});
    sock.once('secureConnect', () => resolve({ raw, sock }));
    sock.once('close', () => reject(new Error('closed before the handshake')));
  });
}

function closed(sock: net.Socket, ms = 3000): Promise<void> {
  return new Promise((r) => {
    if (sock.destroyed) { r(); return; }
    const t = setTimeout(r, ms);
    sock.once('close', () => { clearTimeout(t); r(); });
  });
}

const TAKQ = '<event version="2.0" uid="q" type="t-x-takp-q" time="2020-01-01T00:00:00Z" start="2020-01-01T00:00:00Z" stale="2030-01-01T00:00:00Z" how="m-g"><point lat="0" lon="0" hae="0" ce="0" le="0"/><detail><TakControl><TakRequest version="1"/></TakControl></detail></event>';

describe('e2e: connection churn leaves nothing behind', function () {
  this.timeout(60000);
  let pki: SharedPki;
  let srv: SpawnedServer;

  before(async () => {
    pki = await testPki();
    srv = await spawnServer(['--certs-dir', pki.dir, '--handshake-timeout', '1000', '--idle-timeout', '1500', '--max-clients-per-ip', '0']);
  });
  after(async () => { await srv?.stop('SIGKILL'); });

  /** one scrape on its own connection (a kept-alive one would be an open fd of the server's) */
  const metric = (name: string): Promise<number> => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: srv.metricsPort, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve(metricValue(body, name)));
    }).on('error', reject);
  });

  it('clean, RST, mid-handshake, mid-frame, mid-replay, never reading, uid conflicts, half-negotiated protobuf, a unique uid and callsign each: sessions, SA cache and fds back to the baseline', async () => {
    const load = async (name: string): Promise<Creds> => {
      const r = await pki.client(name);
      return { cert: fs.readFileSync(r.cert), key: fs.readFileSync(r.key), ca: fs.readFileSync(r.ca) };
    };
    const [a, b, c] = await Promise.all([load('churn-a'), load('churn-b'), load('churn-c')]);
    const ca = a.ca;
    const pid = srv.proc.pid!;
    // a long-lived client: the others get its SA replayed (mid-replay) and it sees them come and go
    const w = await pki.client('churn-watcher');
    const watcher = await CotClient.connect(srv.port, w);
    watcher.send(sa('churn-watcher', 'WATCHER', { staleSec: 600 }));
    await sleep(300);
    const fds0 = fdsOf(pid);
    let n = 0;
    const scenarios: Array<() => Promise<void>> = [
      async () => { // clean, unique uid and callsign
        const s = await connect(srv.port, a);
        s.sock.write(sa(`clean-${++n}`, `CS-${n}`));
        await sleep(30);
        s.sock.end();
        await closed(s.sock);
      },
      async () => { // RST after an SA that stays valid for a year
        const s = await connect(srv.port, b);
        s.sock.write(sa(`rst-${++n}`, `CS-${n}`, { staleSec: 365 * 86400 }));
        await sleep(20);
        s.raw.resetAndDestroy();
      },
      async () => { // mid-handshake: a partial ClientHello, then RST or silence until the timeout
        const raw = net.connect({ host: '127.0.0.1', port: srv.port });
        raw.on('error', () => {});
        await new Promise((r) => raw.once('connect', r));
        raw.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
        if (++n % 2 === 0) raw.resetAndDestroy();
        else await closed(raw, 5000);
      },
      async () => { // mid-frame
        const s = await connect(srv.port, c);
        const f = sa(`mf-${++n}`, `CS-${n}`);
        s.sock.write(f.slice(0, f.length >> 1));
        await sleep(20);
        s.raw.resetAndDestroy();
      },
      async () => { // never reads, leaves during its replay
        const s = await connect(srv.port, a, false);
        s.sock.write(sa(`nr-${++n}`, `CS-${n}`));
        await sleep(50);
        s.raw.resetAndDestroy();
      },
      async () => { // the same uid from two certificates
        const uid = `conflict-${++n}`;
        const s1 = await connect(srv.port, a);
        s1.sock.write(sa(uid, 'OWNER'));
        await sleep(30);
        const s2 = await connect(srv.port, b);
        s2.sock.write(sa(uid, 'THIEF'));
        await sleep(30);
        s1.raw.resetAndDestroy();
        s2.sock.end();
        await closed(s2.sock);
      },
      async () => { // protobuf negotiated, then half a message, then RST
        const s = await connect(srv.port, c);
        s.sock.write(sa(`pb-${++n}`, `CS-${n}`));
        s.sock.write(TAKQ);
        await sleep(30);
        s.sock.write(Buffer.from([0xbf, 0xff, 0x03, 0x0a]));
        await sleep(20);
        s.raw.resetAndDestroy();
      },
      async () => { // no certificate
        const raw = net.connect({ host: '127.0.0.1', port: srv.port });
        raw.on('error', () => {});
        const s = tls.connect({ socket: raw, servername: 'localhost', ca });
        s.on('error', () => {});
        await closed(s);
        n++;
      },
      async () => { // connects, says nothing: the idle timeout ends it
        const s = await connect(srv.port, b);
        n++;
        await closed(s.sock, 5000);
      },
    ];
    const deadline = Date.now() + 6000;
    let cycles = 0;
    await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      for (let k = i; Date.now() < deadline; k++) { await scenarios[k % scenarios.length](); cycles++; }
    }));

    // everyone but the watcher is gone (the idle ones after --idle-timeout, the handshakes after
    // --handshake-timeout)
    for (const settle = Date.now() + 10000; Date.now() < settle && (await metric('cot_connections')) !== 1;) await sleep(200);
    assert.ok(cycles >= 40, `only ${cycles} cycles`);
    assert.equal(await metric('cot_connections'), 1, 'sessions left behind');
    const cached = await metric('cot_sa_cache_entries');
    // read without scraping meanwhile: the scrape's own connection is an fd for a moment
    let fds = fdsOf(pid);
    for (const settle = Date.now() + 5000; Date.now() < settle && fds > fds0; fds = fdsOf(pid)) await sleep(100);
    console.log(`      ${cycles} churn cycles; server fds ${fds0} -> ${fds}, SA cache ${cached}`);
    assert.equal(cached, 1, 'SAs of clients that left are still cached (only the watcher\'s should be)');
    assert.ok(fds <= fds0, `open fds ${fds0} -> ${fds}`);
    const accepted = srv.lines.filter((l) => l.audit === 'accepted').length;
    await sleep(200); // logs are asynchronous
    assert.equal(srv.lines.filter((l) => l.audit === 'closed').length, accepted - 1, 'every accepted connection but the watcher\'s logged its close');

    // a newcomer is replayed the watcher's SA alone
    const nb = await CotClient.connect(srv.port, w);
    nb.send(sa('churn-newcomer', 'NEWCOMER'));
    await nb.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'announcement');
    const replayed = nb.frames.filter((f) => !f.includes('t-x-takp-v') && !f.includes('t-x-d-d')).map((f) => /uid="([^"]*)"/.exec(f)![1]);
    assert.deepEqual(replayed, ['churn-watcher']);
    nb.close();
    watcher.close();
  });
});
