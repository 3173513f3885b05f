// Revocation across a Redis cluster: `cotstream revoke --redis` where the CA key is, and every
// node — each with its own certs dir and no crl.json of its own, as on separate machines — closes
// the revoked sessions and refuses the certificate; a list our CA did not sign changes nothing.
// Real redis-server, nodes and CLI in separate processes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { makePki, opensslCrl, type TestPki } from '../helpers/pki.ts';
import { spawnServer, readyzStatus, runCli, spawnedMetric, type SpawnedServer } from '../helpers/server.ts';
import { TestRedis } from '../helpers/redis.ts';
import { CotClient, ping, sleep, until } from '../helpers/client.ts';
import { BatchType, encodeBatch } from '../../src/bus/codec.ts';
import { crlKey } from '../../src/bus/crl-share.ts';
import { DEFAULT_CHANNEL } from '../../src/bus/redis.ts';
import { pemToDer } from '../../src/auth/revocation-file.ts';
import { tempDir } from '../helpers/tmp.ts';

const ready = async (s: SpawnedServer): Promise<boolean> => (await readyzStatus(s)) === 200;

describe('e2e: revocation across a Redis cluster', function () {
  this.timeout(90000);
  let pki: TestPki;
  let foreign: TestPki;
  let redis: TestRedis;
  const nodes: SpawnedServer[] = [];
  const clients: CotClient[] = [];
  const dirs: string[] = [];

  before(async () => {
    pki = await makePki(['alpha', 'bravo', 'charlie']);
    foreign = await makePki([]);
  });
  after(() => { pki.cleanup(); foreign.cleanup(); });
  beforeEach(async () => { redis = await TestRedis.start(); });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(nodes.splice(0).map((n) => n.stop('SIGKILL')));
    await redis.stop();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  /** A machine of the cluster: the CA certificate and the server pair only (no CA key, no list). */
  function machine(): string {
    const d = tempDir('node');
    dirs.push(d);
    fs.copyFileSync(pki.paths.ca, path.join(d, 'ca.pem'));
    fs.copyFileSync(pki.paths.cert, path.join(d, 'server.pem'));
    fs.copyFileSync(pki.paths.key, path.join(d, 'server.key'));
    fs.chmodSync(path.join(d, 'server.key'), 0o600);
    return d;
  }
  async function node(dir: string, id: string): Promise<SpawnedServer> {
    const n = await spawnServer(['--certs-dir', dir, '--redis', redis.url, '--node-id', id, '--bus-heartbeat', '500']);
    nodes.push(n);
    await until(() => ready(n), 10000, `${id} ready`);
    return n;
  }
  const creds = (name: string) => ({ cert: pki.clients[name]!.cert, key: pki.clients[name]!.key, ca: pki.paths.ca });
  async function connect(n: SpawnedServer, name: string): Promise<CotClient> {
    const c = await CotClient.connect(n.port, creds(name));
    clients.push(c);
    c.send(ping(`${name}-ping`));
    await c.waitFor((f) => f.some((x) => x.includes('t-x-c-t-r')), 5000, `${name} pong`);
    return c;
  }
  /** Refused as revoked, before a byte of CoT (closed, nothing received), by that node: its
   *  `revoked` refusals went up (a node that died, or refused for another reason, would close the
   *  connection too), and it still takes charlie, whom nobody revoked. */
  async function refused(n: SpawnedServer, name: string): Promise<boolean> {
    const before = await spawnedMetric(n, 'cot_handshakes_total', { result: 'revoked' });
    let shut = true;
    try {
      const c = await CotClient.connect(n.port, creds(name));
      try { c.send(ping('p')); } catch { /* gone */ }
      shut = await c.waitClosed(3000).then(() => true, () => false) && c.bytes === 0;
      c.close();
    } catch { /* refused during the handshake */ }
    const counted = await spawnedMetric(n, 'cot_handshakes_total', { result: 'revoked' }) === before + 1;
    const other = await connect(n, 'charlie');
    other.close();
    return shut && counted;
  }

  it('revoke --redis where the CA key is: every node closes the sessions and refuses the certificate; kept across restarts, and put back into a Redis that lost it', async () => {
    const a = await node(machine(), 'a');
    const bDir = machine();
    const b = await node(bDir, 'b');
    const alphaA = await connect(a, 'alpha');
    const alphaB = await connect(b, 'alpha');
    const charlie = await connect(b, 'charlie');

    // when the list reached Redis: its notice on the channel
    const listener = new Redis(redis.url);
    let noticeAt = 0;
    listener.on('messageBuffer', (_ch: Buffer, m: Buffer) => { if (m[1] === BatchType.crl && noticeAt === 0) noticeAt = Date.now(); });
    await listener.subscribe(DEFAULT_CHANNEL);
    const closed = [alphaA, alphaB].map((c) => c.waitClosed(30000).then(() => Date.now()));
    // the admin machine: the CA key and its own crl.json, none of the nodes reads it
    const out = await runCli(['revoke', pki.clients.alpha!.cert, '--certs-dir', pki.dir, '--reason', 'key_compromise', '--redis', redis.url]);
    listener.disconnect();
    assert.match(out.stdout, /revoked .*CN=alpha/);
    assert.match(out.stdout, new RegExp(`sent to redis://127.0.0.1:${redis.port}: every node`));
    const took = Math.max(...(await Promise.all(closed))) - noticeAt;
    assert.ok(noticeAt > 0 && took < 1000, `sessions closed ${took} ms after the list reached Redis`);
    process.stdout.write(`      (both nodes closed the revoked sessions ${took} ms after the list reached Redis)\n`);
    for (const n of [a, b]) {
      // stdout is read asynchronously: the lines may trail the closed socket
      await until(() => n.lines.some((l) => l.audit === 'revoked'), 3000, 'the revoked audit line');
      const line = n.lines.find((l) => l.audit === 'revoked');
      assert.ok(line, 'an audit line for the revoked session');
      assert.equal(line.cn, 'alpha');
      assert.equal(line.revocationReason, 'key_compromise');
      assert.ok(n.lines.some((l) => l.audit === 'revocation' && l.source === 'cluster' && l.from === 'redis'), 'the list taken from Redis is logged');
      assert.ok(await refused(n, 'alpha'), 'alpha refused');
      assert.equal(await spawnedMetric(n, 'cot_revoked_serials'), 1);
      assert.ok(await spawnedMetric(n, 'cot_handshakes_total', { result: 'revoked' }) >= 1);
    }
    assert.equal(await spawnedMetric(a, 'cot_crl_cluster_timestamp_seconds'), await spawnedMetric(b, 'cot_crl_cluster_timestamp_seconds'));
    assert.ok(await spawnedMetric(a, 'cot_crl_cluster_timestamp_seconds') > Date.now() / 1000 - 60);
    assert.ok(!charlie.closed, 'charlie untouched');
    charlie.send(ping('charlie-again'));
    await charlie.waitFor((f) => f.filter((x) => x.includes('t-x-c-t-r')).length >= 2, 5000, 'charlie still served');
    assert.match(fs.readFileSync(path.join(bDir, 'crl-cluster.pem'), 'utf8'), /BEGIN X509 CRL/);
    // what an operator on node b's machine sees
    const listed = (await runCli(['crl', 'list', '--certs-dir', bDir])).stdout;
    assert.match(listed, /crl\.json: no revocation list/);
    assert.match(listed, new RegExp(`crl-cluster\\.pem: the cluster's list[^\\n]*\\n.*\\n${pki.clients.alpha!.serial}\\s+key_compromise`));
    // and certs show, with alpha's certificate on that machine, says the server refuses it
    fs.mkdirSync(path.join(bDir, 'clients'), { recursive: true });
    fs.copyFileSync(pki.clients.alpha!.cert, path.join(bDir, 'clients', 'alpha.pem'));
    fs.copyFileSync(pki.clients.charlie!.cert, path.join(bDir, 'clients', 'charlie.pem'));
    const shown = (await runCli(['certs', 'show', '--certs-dir', bDir])).stdout;
    assert.match(shown, new RegExp(`clients/alpha\\.pem\\s+CN=alpha.*${pki.clients.alpha!.serial}.*REVOKED \\(key_compromise, cluster list\\)`));
    assert.match(shown, /clients\/charlie\.pem\s+CN=charlie.*valid/);

    // Redis gone and node b restarted meanwhile: it starts on what it kept and still refuses alpha
    await redis.kill();
    await b.stop('SIGTERM');
    nodes.splice(nodes.indexOf(b), 1);
    const b2 = await spawnServer(['--certs-dir', bDir, '--redis', redis.url, '--node-id', 'b', '--bus-heartbeat', '500']);
    nodes.push(b2);
    assert.ok(await refused(b2, 'alpha'), 'alpha refused by a node restarted without Redis');
    assert.equal(await spawnedMetric(b2, 'cot_revoked_serials'), 1);
    // and taken out of the cluster (no --redis): what the cluster revoked stays revoked
    const solo = await spawnServer(['--certs-dir', bDir]);
    nodes.push(solo);
    assert.ok(await refused(solo, 'alpha'), 'alpha refused by a node on the in-process bus');
    assert.ok(solo.lines.some((l) => l.audit === 'revocation' && l.from === path.join(bDir, 'crl-cluster.pem')));

    // Redis back, empty: the nodes put the list back, and a node started now on a fresh machine takes it
    redis = await TestRedis.startOn(redis.port);
    const probe = new Redis(redis.url);
    try {
      await until(async () => (await probe.hget(crlKey(DEFAULT_CHANNEL), 't')) !== null, 10000, 'the list back in Redis');
    } finally {
      probe.disconnect();
    }
    const c = await node(machine(), 'c');
    await until(async () => (await spawnedMetric(c, 'cot_revoked_serials')) === 1, 5000, 'node c enforcing the cluster list');
    assert.ok(await refused(c, 'alpha'), 'alpha refused by a node that joined later');

    // un-revoking goes the same way: the list without alpha, signed later, frees it everywhere
    const crl = path.join(pki.dir, 'crl.json');
    fs.writeFileSync(crl, JSON.stringify({ revoked: [] }));
    await sleep(1100); // a this_update at least a second later
    const out2 = await runCli(['crl', 'refresh', '--certs-dir', pki.dir, '--redis', redis.url]);
    assert.match(out2.stdout, /sent to redis/);
    for (const n of [a, b2, c]) await until(async () => (await spawnedMetric(n, 'cot_revoked_serials')) === 0, 5000, 'alpha free again');
    await connect(c, 'alpha');
  });

  it('a list our CA did not sign, a tampered one or an older one changes nothing: refused lists counted and logged once', async () => {
    const a = await node(machine(), 'a');
    const bravo = await connect(a, 'bravo');
    const r = new Redis(redis.url);
    try {
      const notice = encodeBatch({ type: BatchType.crl, node: 'intruder', epoch: 1, seq: 0 }, []);
      const put = async (der: Buffer, t: number) => {
        await r.hset(crlKey(DEFAULT_CHANNEL), 't', String(t), 'der', der);
        await r.publish(DEFAULT_CHANNEL, notice);
      };
      // another CA revoking bravo: refused, twice announced, logged once
      const alien = pemToDer(opensslCrl(foreign, [pki.clients.bravo!.serial]));
      await put(alien, Date.now() + 3600_000);
      await until(async () => (await spawnedMetric(a, 'cot_crl_cluster_rejected_total')) === 1, 5000, 'the foreign list refused');
      await r.publish(DEFAULT_CHANNEL, notice);
      await sleep(300);
      assert.equal(await spawnedMetric(a, 'cot_crl_cluster_rejected_total'), 1);
      assert.equal(a.lines.filter((l) => l.audit === 'revocation' && String(l.msg).includes('refused')).length, 1);
      // ours, a byte changed: refused too
      const older = pemToDer(opensslCrl(pki, [])); // signed first: its this_update is the earlier
      await sleep(1100);
      const real = pemToDer(opensslCrl(pki, [pki.clients.bravo!.serial]));
      const bent = Buffer.from(real);
      bent[bent.length - 10]! ^= 0xff; // in the signature
      await put(bent, Date.now() + 3600_000);
      await until(async () => (await spawnedMetric(a, 'cot_crl_cluster_rejected_total')) === 2, 5000, 'the tampered list refused');
      assert.ok(!bravo.closed, 'bravo untouched by lists our CA did not sign');
      assert.equal(await spawnedMetric(a, 'cot_revoked_serials'), 0);
      assert.equal(a.lines.filter((l) => l.audit === 'revoked').length, 0);

      // a real one: in force
      await put(real, 0);
      await bravo.waitClosed(3000);
      // an older real one (free of bravo) written over it in Redis: not taken, and the node puts its newer one back
      await put(older, 1000);
      await until(async () => (await r.hgetBuffer(crlKey(DEFAULT_CHANNEL), 'der'))?.equals(real) === true, 5000, 'the newer list put back');
      assert.ok(await refused(a, 'bravo'), 'bravo still refused');
    } finally {
      r.disconnect();
    }
  });
});
