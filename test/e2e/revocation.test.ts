// Issue 5: revocation is effective at once on a running server, and every accepted list format
// refuses the right certificate at the handshake; enrollment from the data package connects.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { unzipSync, strFromU8 } from 'fflate';
import tls from 'node:tls';
import { makePki, openssl, opensslCrl, type TestPki } from '../helpers/pki.ts';
import { startTestServer, spawnServer, runCli, type TestServer } from '../helpers/server.ts';
import { CotClient, chat, ping, sleep } from '../helpers/client.ts';
import { pemToDer } from '../../src/auth/revocation-file.ts';
import { serialToBigInt } from '../../src/auth/serial.ts';



const creds = (pki: TestPki, name: string) => ({ cert: pki.clients[name]!.cert, key: pki.clients[name]!.key, ca: pki.paths.ca });

/** The server must not let this client exchange a single byte of CoT: closed, nothing received. */
async function expectRefused(port: number, c: { cert: string; key: string; ca: string }): Promise<void> {
  let client: CotClient;
  try {
    client = await CotClient.connect(port, c);
  } catch {
    return; // refused before secureConnect (TLS 1.2 ordering): refused all the same
  }
  try {
    client.send(ping('refused-ping'));
  } catch {
    /* already gone */
  }
  await client.waitClosed(3000);
  assert.equal(client.bytes, 0, `a refused client received ${client.bytes} bytes`);
}

async function expectAccepted(port: number, c: { cert: string; key: string; ca: string }): Promise<void> {
  const client = await CotClient.connect(port, c);
  try {
    client.send(ping('accepted-ping'));
    await client.waitFor((f) => f.some((x) => x.includes('t-x-c-t-r')), 5000, 'pong');
  } finally {
    client.close();
  }
}

describe('e2e: revocation', function () {
  this.timeout(60000);
  let pki: TestPki;
  before(async () => {
    pki = await makePki(['alpha', 'bravo', 'charlie', 'delta']);
  });
  after(() => pki.cleanup());

  it('revoked with the CLI while streaming: disconnected within 1 s, reconnect refused, others lose nothing', async () => {
    const crl = path.join(pki.dir, 'crl.json'); // default location, absent at start: nothing revoked
    const srv = await startTestServer(pki.dir);
    const timers: NodeJS.Timeout[] = [];
    try {
      const alpha = await CotClient.connect(srv.port, creds(pki, 'alpha'));
      const bravo = await CotClient.connect(srv.port, creds(pki, 'bravo'));
      const charlie = await CotClient.connect(srv.port, creds(pki, 'charlie'));
      await sleep(50);

      // everyone streams numbered events; bravo and charlie must see each other's every event
      const sent = { alpha: 0, bravo: 0, charlie: 0 };
      const stream = (c: CotClient, name: keyof typeof sent, ms: number) => {
        const t = setInterval(() => {
          if (c.closed) return;
          c.send(chat(`${name}-uid`, `${name}-seq-${++sent[name]}`));
        }, ms);
        timers.push(t);
      };
      stream(alpha, 'alpha', 10);
      stream(bravo, 'bravo', 10);
      stream(charlie, 'charlie', 10);
      await bravo.waitFor((f) => f.some((x) => x.includes('alpha-seq-5<')), 5000, 'alpha streaming to bravo');

      const out = await runCli(['revoke', pki.clients.alpha!.cert, '--certs-dir', pki.dir, '--reason', 'key_compromise']);
      assert.match(out.stdout, /revoked .*CN=alpha/);
      const writtenAt = fs.statSync(crl).mtimeMs;
      await alpha.waitClosed(3000);
      const closedAt = Date.now();
      const latency = closedAt - writtenAt;
      assert.ok(latency < 1000, `alpha disconnected ${latency} ms after the list was written`);
      process.stdout.write(`      (revocation took effect ${Math.round(latency)} ms after crl.json was written)\n`);

      const audit = srv.logs.find((l) => l.audit === 'revoked');
      assert.ok(audit, 'an audit line for the revoked session');
      assert.equal(audit.cn, 'alpha');
      assert.equal(audit.serial, pki.clients.alpha!.serial);
      assert.equal(audit.revocationReason, 'key_compromise');
      const closed = srv.logs.find((l) => l.audit === 'closed' && l.reason === 'revoked');
      assert.ok(closed);
      assert.equal(audit.sid, closed.sid, 'the revoked line names its session, as every line about a client');

      // reconnect refused before any CoT, counted
      await expectRefused(srv.port, creds(pki, 'alpha'));
      assert.equal(await srv.metric('cot_handshakes_total', { result: 'revoked' }), 1);
      assert.equal(await srv.metric('cot_revoked_serials'), 1);
      // a revoked device retrying in a loop: every attempt counted, the log limited (20 lines/s;
      // before, one line per attempt)
      const t0 = Date.now();
      await Promise.all(Array.from({ length: 60 }, () => expectRefused(srv.port, creds(pki, 'alpha'))));
      const windows = Math.floor((Date.now() - t0) / 1000) + 2; // 1-s log windows the attempts can span
      assert.equal(await srv.metric('cot_handshakes_total', { result: 'revoked' }), 61);
      const refusedLines = srv.logs.filter((l) => l.audit === 'refused' && l.reason === 'revoked').length;
      assert.ok(refusedLines >= 1 && refusedLines <= 20 * windows, `${refusedLines} refused lines for 61 attempts in ${windows} windows`);

      // bravo and charlie were untouched and lost nothing, before, during and after
      await sleep(200);
      for (const t of timers) clearInterval(t);
      const last = { ...sent };
      await charlie.waitFor((f) => f.some((x) => x.includes(`bravo-seq-${last.bravo}<`)), 5000, 'bravo stream at charlie');
      await bravo.waitFor((f) => f.some((x) => x.includes(`charlie-seq-${last.charlie}<`)), 5000, 'charlie stream at bravo');
      const seqs = (c: CotClient, from: string) =>
        c.frames.map((f) => new RegExp(`>${from}-seq-(\\d+)<`).exec(f)?.[1]).filter((x): x is string => !!x).map(Number);
      assert.deepEqual(seqs(charlie, 'bravo'), Array.from({ length: last.bravo }, (_, i) => i + 1));
      assert.deepEqual(seqs(bravo, 'charlie'), Array.from({ length: last.charlie }, (_, i) => i + 1));
      assert.ok(!bravo.closed && !charlie.closed);
      assert.ok(last.bravo > 20 && last.charlie > 20, 'the streams ran across the revocation');
      bravo.close();
      charlie.close();
    } finally {
      for (const t of timers) clearInterval(t);
      await srv.stop();
      fs.rmSync(crl, { force: true });
      fs.rmSync(pki.paths.crlPem, { force: true });
    }
  });

  /** a server whose --crl is `file` in the test PKI, written with `content`; both gone afterwards */
  async function withList(file: string, content: string | Buffer, body: (srv: TestServer, f: string) => Promise<void>): Promise<void> {
    const f = path.join(pki.dir, file);
    fs.writeFileSync(f, content);
    const srv = await startTestServer(pki.dir, { crl: f });
    try {
      await body(srv, f);
    } finally {
      await srv.stop();
      fs.rmSync(f, { force: true });
    }
  }

  describe('every accepted list format refuses the right certificate at the handshake', () => {
    const alphaSerial = () => pki.clients.alpha!.serial;
    const colon = (hex: string) => ('00' + (hex.length % 2 ? '0' : '') + hex).toUpperCase().match(/../g)!.join(':');
    const cases: Array<[string, string, () => string | Buffer]> = [
      ['FreeTAKServer PEM CRL in a .json file', 'FTS_CRL.json', () => opensslCrl(pki, [alphaSerial()])],
      ['DER CRL', 'revoked.crl', () => pemToDer(opensslCrl(pki, [alphaSerial()]))],
      ['JSON, decimal serial above 2^53', 'dec.json', () => `{"revoked": [{"serial_number": ${serialToBigInt(alphaSerial()).toString(10)}, "reason": "superseded"}]}`],
      ['JSON, colon-hex serial', 'colon.json', () => JSON.stringify({ revoked: [{ serial_number: colon(alphaSerial()) }] })],
      ['JSON, plain hex serial', 'hex.json', () => JSON.stringify({ revoked: [{ serial_number: alphaSerial().toUpperCase() }] })],
    ];
    for (const [title, file, content] of cases) {
      it(title, () => withList(file, content(), async (srv) => {
        await expectRefused(srv.port, creds(pki, 'alpha'));
        await expectAccepted(srv.port, creds(pki, 'bravo'));
        assert.equal(await srv.metric('cot_handshakes_total', { result: 'revoked' }), 1);
        assert.equal(await srv.metric('cot_revoked_serials'), 1);
      }));
    }
  });

  it('a corrupt list written over a good one keeps the good one in force', () =>
    withList('corrupt-test.json', JSON.stringify({ revoked: [{ serial_number: pki.clients.alpha!.serial }] }), async (srv, f) => {
      const good = fs.readFileSync(f);
      fs.writeFileSync(f, '{"revoked": [{"serial_number": "');
      await waitForLog(srv, (l) => l.level === 50 && /last good list/.test(String(l.msg)), 2000);
      await expectRefused(srv.port, creds(pki, 'alpha'));
      await expectAccepted(srv.port, creds(pki, 'bravo'));
      assert.equal(await srv.metric('cot_revoked_serials'), 1);
      assert.equal(await srv.metric('cot_crl_ok'), 0);
      // the bad edit undone, byte for byte: fine again
      fs.writeFileSync(f, good);
      for (const t0 = Date.now(); (await srv.metric('cot_crl_ok')) !== 1;) {
        assert.ok(Date.now() - t0 < 3000, 'cot_crl_ok back to 1 once the good bytes are back');
        await sleep(50);
      }
    }));

  it('a list deleted while running stays in force until an empty one is written', () =>
    withList('deleted-test.json', JSON.stringify({ revoked: [{ serial_number: pki.clients.alpha!.serial, reason: 'key_compromise' }] }), async (srv, f) => {
      await expectRefused(srv.port, creds(pki, 'alpha'));
      assert.equal(await srv.metric('cot_crl_ok'), 1);
      fs.rmSync(f);
      await waitForLog(srv, (l) => l.level === 50 && /is gone/.test(String(l.msg)), 3000);
      assert.equal(await srv.metric('cot_crl_ok'), 0, 'the gauge an alert watches says the file is gone');
      await sleep(700); // past the watcher's poll and debounce
      await expectRefused(srv.port, creds(pki, 'alpha'));
      await expectAccepted(srv.port, creds(pki, 'bravo'));
      assert.equal(await srv.metric('cot_revoked_serials'), 1);
      assert.equal(await srv.metric('cot_handshakes_total', { result: 'revoked' }), 2);
      // clearing every revocation is an explicit act: an empty list
      fs.writeFileSync(f, JSON.stringify({ revoked: [] }));
      await waitForLog(srv, (l) => /revocation list loaded/.test(String(l.msg)) && l.revoked === 0, 3000);
      await expectAccepted(srv.port, creds(pki, 'alpha'));
      assert.equal(await srv.metric('cot_crl_ok'), 1);
    }));

  it('crl.json lost, then a restart: the signed crl.pem that revoke wrote beside it is enforced, and the next revoke starts from it', async () => {
    const crl = path.join(pki.dir, 'crl.json');
    try {
      await runCli(['revoke', pki.clients.alpha!.cert, '--certs-dir', pki.dir, '--reason', 'key_compromise']);
      assert.ok(fs.existsSync(pki.paths.crlPem));
      fs.rmSync(crl);
      const srv = await startTestServer(pki.dir);
      try {
        await expectRefused(srv.port, creds(pki, 'alpha'));
        await expectAccepted(srv.port, creds(pki, 'bravo'));
        assert.equal(await srv.metric('cot_revoked_serials'), 1);
        assert.equal(await srv.metric('cot_crl_ok'), 0);
        assert.ok(srv.logs.some((l) => l.level === 50 && /enforcing the signed copy/.test(String(l.msg))), 'one error line says so');

        // the next revoke rewrites crl.json from the copy: alpha stays revoked
        const out = await runCli(['revoke', pki.clients.bravo!.cert, '--certs-dir', pki.dir]);
        assert.match(out.stderr, /crl\.json not found: using the 1 revocation\(s\) of its signed copy/);
        const json = JSON.parse(fs.readFileSync(crl, 'utf8')) as { revoked: Array<{ serial_number: string }> };
        assert.deepEqual(json.revoked.map((r) => r.serial_number).sort(), [pki.clients.alpha!.serial, pki.clients.bravo!.serial].sort());
        await waitForLog(srv, (l) => /revocation list loaded/.test(String(l.msg)) && l.revoked === 2, 3000);
        await expectRefused(srv.port, creds(pki, 'alpha'));
        await expectRefused(srv.port, creds(pki, 'bravo'));
      } finally {
        await srv.stop();
      }
      // crl list shows what the server enforces
      fs.rmSync(crl);
      const list = await runCli(['crl', 'list', '--certs-dir', pki.dir]);
      assert.match(list.stdout, new RegExp(pki.clients.alpha!.serial));
    } finally {
      fs.rmSync(crl, { force: true });
      fs.rmSync(pki.paths.crlPem, { force: true });
    }
  });

  it('an expired next_update warns (log, metric) and locks nobody out', () =>
    withList('expired.json', JSON.stringify({ next_update: '2020-01-01T00:00:00Z', revoked: [{ serial_number: pki.clients.alpha!.serial }] }), async (srv) => {
      await expectAccepted(srv.port, creds(pki, 'bravo'));
      await expectAccepted(srv.port, creds(pki, 'charlie'));
      await expectRefused(srv.port, creds(pki, 'alpha'));
      assert.equal(await srv.metric('cot_crl_next_update_timestamp_seconds'), Date.parse('2020-01-01T00:00:00Z') / 1000);
      assert.equal(srv.logs.filter((l) => l.level === 40 && /next_update has passed/.test(String(l.msg))).length, 1, 'warned once at start');
    }));

  it('exports certificate expiry and warns under 30 days', async () => {
    const srv = await startTestServer(pki.dir);
    try {
      const server = (await srv.metric('cot_certificate_expiry_timestamp_seconds', { cert: 'server' })) * 1000;
      const ca = (await srv.metric('cot_certificate_expiry_timestamp_seconds', { cert: 'ca' })) * 1000;
      assert.ok(Math.abs(server - (Date.now() + 365 * 86400_000)) < 2 * 86400_000, `server expiry ${new Date(server).toISOString()}`);
      assert.ok(Math.abs(ca - (Date.now() + 3650 * 86400_000)) < 2 * 86400_000, `ca expiry ${new Date(ca).toISOString()}`);
      assert.ok(!srv.logs.some((l) => /certificate expires in/.test(String(l.msg))));
    } finally {
      await srv.stop();
    }
    // a short-lived server certificate: warned at start
    const short = await makePki([]);
    try {
      const { initPki } = await import('../../src/pki/index.ts');
      await initPki({ certsDir: short.dir, hosts: ['localhost'], days: 10, force: true });
      const s2 = await startTestServer(short.dir);
      try {
        assert.ok(s2.logs.some((l) => l.level === 40 && l.cert === 'server' && /expires in 9 days/.test(String(l.msg))));
      } finally {
        await s2.stop();
      }
    } finally {
      short.cleanup();
    }
  });

  it('the real process: SIGHUP reloads the list; a corrupt list at start refuses to start, naming it', async () => {
    const f = path.join(pki.dir, 'hup.json');
    fs.writeFileSync(f, JSON.stringify({ revoked: [] }));
    const srv = await spawnServer(['--certs-dir', pki.dir, '--crl', f]);
    try {
      const bravo = await CotClient.connect(srv.port, creds(pki, 'bravo'));
      bravo.send(ping());
      await bravo.waitFor((fr) => fr.some((x) => x.includes('t-x-c-t-r')));
      fs.writeFileSync(f, JSON.stringify({ revoked: [{ serial_number: pki.clients.bravo!.serial, reason: 'privilege_withdrawn' }] }));
      srv.proc.kill('SIGHUP');
      await bravo.waitClosed(3000);
      await waitUntil(() => srv.lines.some((l) => l.audit === 'reload'), 2000, 'reload audit line');
      await waitUntil(() => srv.lines.some((l) => l.audit === 'revoked' && l.revocationReason === 'privilege_withdrawn'), 2000, 'revoked audit line');
      assert.equal(srv.proc.exitCode, null, 'SIGHUP must not stop the server');
    } finally {
      assert.equal(await srv.stop(), 0);
    }
    fs.writeFileSync(f, 'this is not a revocation list');
    try {
      await assert.rejects(spawnServer(['--certs-dir', pki.dir, '--crl', f]), (e: Error) => e.message.includes(f) && /refusing to start/.test(e.message));
    } finally {
      fs.rmSync(f, { force: true });
    }
  });

  it('enrollment: the data package alone connects (client PKCS#12 + CA from the truststore)', async () => {
    const r = await pki.client('echo', { package: true, host: '127.0.0.1' });
    const files = unzipSync(fs.readFileSync(r.package!));
    const pref = strFromU8(files['certs/cotstream.pref']!);
    const entry = (k: string) => new RegExp(`<entry key="${k}" class="[^"]+">([^<]*)</entry>`).exec(pref)![1]!;
    const [host, , proto] = entry('connectString0').split(':');
    assert.equal(proto, 'ssl');
    const trust = path.join(pki.dir, 'pkg-truststore.p12');
    fs.writeFileSync(trust, files[`certs/${entry('caLocation').split('/').pop()}`]!);
    const caPem = openssl(['pkcs12', '-in', trust, '-passin', `pass:${entry('caPassword')}`, '-nokeys']);
    const srv = await startTestServer(pki.dir);
    try {
      const sock = tls.connect({
        host,
        port: srv.port, // the package says 8089; the test server listens on an ephemeral port
        servername: 'localhost',
        pfx: Buffer.from(files[`certs/${entry('certificateLocation').split('/').pop()}`]!),
        passphrase: entry('clientPassword'),
        ca: caPem,
      });
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString()));
      await new Promise<void>((resolve, reject) => {
        sock.once('secureConnect', resolve);
        sock.once('error', reject);
      });
      sock.write(ping('pkg-ping'));
      await waitUntil(() => got.includes('t-x-c-t-r'), 5000, 'pong for the enrolled client');
      sock.destroy();
      assert.ok(srv.logs.some((l) => l.audit === 'accepted' && l.cn === 'echo'));
    } finally {
      await srv.stop();
    }
  });
});

async function waitUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function waitForLog(srv: TestServer, pred: (l: Record<string, unknown>) => boolean, ms: number): Promise<void> {
  return waitUntil(() => srv.logs.some(pred), ms, 'log line');
}
