// The revocation list a Redis cluster shares, on one node: only a CRL our CA signed is taken,
// newer replaces older, it is enforced beside the node's own file (never instead of it), and it is
// kept on disk for a restart. The Redis side is in test/e2e/redis-revocation.test.ts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { RevocationList, type RevocationChange } from '../../src/auth/revocation.ts';
import { ClusterCrl } from '../../src/auth/cluster-crl.ts';
import { signCrl, verifyCrl } from '../../src/auth/crl-x509.ts';
import { pemToDer } from '../../src/auth/revocation-file.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { makePki, memoryLogger, opensslCrl, type TestPki } from '../helpers/pki.ts';
import { tempDir } from '../helpers/tmp.ts';

describe('cluster revocation list (one node)', function () {
  let pki: TestPki;
  let foreign: TestPki;
  let dir: string;
  before(async () => {
    pki = await makePki(['alpha', 'bravo']);
    foreign = await makePki([]);
  });
  after(() => { pki.cleanup(); foreign.cleanup(); });
  beforeEach(() => { dir = tempDir('ccrl'); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const alpha = () => pki.clients.alpha!.serial;
  const bravo = () => pki.clients.bravo!.serial;
  /** a list our CA signs, as `revoke` makes it, at a given this_update */
  const ours = (serials: string[], at: Date, p: TestPki = pki): Buffer => pemToDer(signCrl({
    caCertPem: fs.readFileSync(p.paths.ca, 'utf8'), caKeyPem: fs.readFileSync(p.paths.caKey, 'utf8'),
    thisUpdate: at, nextUpdate: new Date(at.getTime() + 86400_000),
    entries: serials.map((serial) => ({ serial, date: at, reason: 'key_compromise' })),
  }));

  function node(fileEntries: string[] = []) {
    const crl = path.join(dir, 'crl.json');
    fs.writeFileSync(crl, JSON.stringify({ revoked: fileEntries.map((s) => ({ serial_number: s, reason: 'superseded' })) }));
    const { log, lines } = memoryLogger();
    const list = new RevocationList({ path: crl, log });
    list.load();
    const changes: RevocationChange[] = [];
    list.on('change', (c: RevocationChange) => changes.push(c));
    const metrics = new Metrics({ defaultMetrics: false });
    const kept = path.join(dir, 'crl-cluster.pem');
    const cluster = new ClusterCrl({ ca: pki.paths.ca, file: kept, list, log, metrics });
    return { crl, list, cluster, lines, changes, metrics, kept };
  }

  it('verifyCrl: takes ours and one openssl made; refuses another CA\'s and a tampered one, saying why', () => {
    const ca = fs.readFileSync(pki.paths.ca, 'utf8');
    assert.deepEqual(verifyCrl(ours([alpha()], new Date()), ca).entries.map((e) => e.serial), [alpha()]);
    assert.deepEqual(verifyCrl(pemToDer(opensslCrl(pki, [bravo()])), ca).entries.map((e) => e.serial), [bravo()]);
    // a CA bundle: the signer may be any of its certificates
    const bundle = fs.readFileSync(foreign.paths.ca, 'utf8') + ca;
    assert.equal(verifyCrl(ours([alpha()], new Date()), bundle).entries.length, 1);
    assert.throws(() => verifyCrl(ours([alpha()], new Date(), foreign), ca), /not signed by the CA/);
    const tampered = ours([alpha()], new Date());
    const at = tampered.indexOf(Buffer.from(alpha().length % 2 ? '0' + alpha() : alpha(), 'hex'));
    assert.ok(at > 0);
    tampered[at + 3]! ^= 0x01; // another serial, same length: still a well-formed CRL
    assert.throws(() => verifyCrl(tampered, ca), /not signed/);
    assert.throws(() => verifyCrl(Buffer.from('not a crl'), ca), /not an X.509 CRL/);
  });

  it('enforced beside the file: a serial either revokes is refused, and the file loses nothing', async () => {
    const n = node([bravo()]);
    assert.equal(n.cluster.offer(ours([alpha(), bravo()], new Date()), 'redis'), 'applied');
    assert.equal(n.list.lookup(alpha())?.reason, 'key_compromise');
    assert.equal(n.list.lookup(bravo())?.reason, 'superseded', 'the file\'s entry first');
    assert.equal(n.list.size, 2);
    assert.deepEqual(n.changes, [{ added: [alpha()], removed: [] }]);
    // a newer cluster list without either: alpha is free again, bravo stays (the file has it)
    assert.equal(n.cluster.offer(ours([], new Date(Date.now() + 1000)), 'redis'), 'applied');
    assert.equal(n.list.lookup(alpha()), undefined);
    assert.ok(n.list.lookup(bravo()));
    assert.deepEqual(n.changes[1], { added: [], removed: [alpha()] });
    assert.equal(n.list.size, 1);
    assert.equal((await n.metrics.revokedSerials.get()).values[0]!.value, 1);
  });

  it('newer replaces older, never the reverse; at the same second Redis\'s copy wins', () => {
    const n = node();
    const t = Date.now() - (Date.now() % 1000);
    assert.equal(n.cluster.offer(ours([alpha()], new Date(t)), 'redis'), 'applied');
    assert.equal(n.cluster.offer(ours([], new Date(t - 5000)), 'redis'), 'older');
    assert.ok(n.list.lookup(alpha()), 'an older list (a replay) frees nobody');
    const same = n.cluster.newest()!.der;
    assert.equal(n.cluster.offer(same, 'redis'), 'same');
    const twin = ours([alpha(), bravo()], new Date(t));
    assert.equal(n.cluster.offer(twin, n.kept), 'older', 'not from Redis: the one held stays');
    assert.equal(n.cluster.offer(twin, 'redis'), 'applied');
    assert.ok(n.list.lookup(bravo()));
    assert.equal(n.cluster.newest()!.at, t);
  });

  it('refused lists are counted and logged once each; the list in force stays', async () => {
    const n = node();
    n.cluster.offer(ours([alpha()], new Date()), 'redis');
    const bad = ours([bravo()], new Date(Date.now() + 5000), foreign);
    assert.equal(n.cluster.offer(bad, 'redis'), 'rejected');
    assert.equal(n.cluster.offer(bad, 'redis'), 'rejected');
    assert.equal(n.cluster.offer(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]), 'redis'), 'rejected');
    assert.equal((await n.metrics.crlClusterRejected.get()).values[0]!.value, 2);
    const warned = n.lines.filter((l) => String(l.msg).includes('refused'));
    assert.equal(warned.length, 2);
    assert.equal(warned[0]!.from, 'redis');
    assert.ok(n.list.lookup(alpha()) && !n.list.lookup(bravo()));
  });

  it('kept on disk: a node started later enforces it before Redis answers; a bad kept file is ignored', async () => {
    const first = node();
    const list = ours([alpha()], new Date());
    first.cluster.offer(list, 'redis');
    assert.match(fs.readFileSync(first.kept, 'utf8'), /^-----BEGIN X509 CRL-----/);
    assert.equal(fs.statSync(first.kept).mode & 0o777, 0o644);

    const again = node();
    again.cluster.load();
    assert.ok(again.list.lookup(alpha()));
    assert.ok(again.cluster.newest()!.der.equals(list));
    assert.equal((await again.metrics.crlCluster.get()).values[0]!.value, Math.floor(again.cluster.newest()!.at / 1000));

    fs.writeFileSync(again.kept, ours([bravo()], new Date(), foreign));
    const third = node();
    third.cluster.load();
    assert.equal(third.list.lookup(bravo()), undefined);
    assert.equal(third.cluster.newest(), undefined);
    assert.ok(third.lines.some((l) => String(l.msg).includes('kept cluster revocation list is not one our CA signed')));
  });
});
