// Issue 8: /metrics restrictions (bearer token, IP/CIDR allowlist) are enforced and off by
// default; /healthz and /readyz answer load balancers without credentials.
import assert from 'node:assert/strict';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { startTestServer, spawnServer, type TestServer } from '../helpers/server.ts';
import { OPTIONS, buildConfig } from '../../src/config.ts';
import { parseAllowList } from '../../src/net/addresses.ts';
import { CloseReason } from '../../src/session.ts';

const TOKEN = 'http-test-token-b1c9';

async function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

describe('ops: /metrics access control, /healthz, /readyz', function () {
  this.timeout(30000);
  let pki: SharedPki;
  let srv: TestServer | null = null;
  before(async () => { pki = await testPki(); });
  afterEach(async () => { await srv?.stop(); srv = null; });

  it('is open by default: no token and no allowlist configured', async () => {
    const cfg = buildConfig({}, {});
    assert.equal(cfg.metricsToken, '');
    assert.equal(cfg.metricsAllow, '');
    for (const key of ['metricsToken', 'metricsAllow'] as const) {
      const spec = OPTIONS.find((o) => o.key === key)!;
      assert.equal(spec.def, '');
    }
    srv = await startTestServer(pki.dir);
    const r = await get(srv.metricsPort, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.body, /^cot_connections 0$/m);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    // every close reason has its series from the start, like the other counters (rate() and alerts need it)
    for (const reason of Object.keys(CloseReason)) assert.match(r.body, new RegExp(`^cot_sessions_closed_total\\{reason="${reason}"\\} 0$`, 'm'));
  });

  it('COTSTREAM_METRICS_TOKEN: 401 without the right bearer token, 200 with it', async () => {
    srv = await startTestServer(pki.dir, {}, { COTSTREAM_METRICS_TOKEN: TOKEN });
    const p = srv.metricsPort;
    const none = await get(p, '/metrics');
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.doesNotMatch(none.body, /cot_/);
    assert.equal((await get(p, '/metrics', { authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await get(p, '/metrics', { authorization: `Bearer ${TOKEN}x` })).status, 401);
    assert.equal((await get(p, '/metrics', { authorization: `Bearer ${TOKEN.slice(0, -1)}` })).status, 401);
    assert.equal((await get(p, '/metrics', { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` })).status, 401);
    assert.equal((await get(p, '/metrics', { authorization: TOKEN })).status, 401);
    const ok = await get(p, '/metrics', { authorization: `Bearer ${TOKEN}` });
    assert.equal(ok.status, 200);
    assert.match(ok.body, /^cot_connections 0$/m);
    assert.equal((await get(p, '/metrics', { authorization: `bearer ${TOKEN}` })).status, 200); // the scheme is case-insensitive
    // health endpoints reveal nothing and stay open for load balancers
    assert.equal((await get(p, '/healthz')).status, 200);
    assert.equal((await get(p, '/readyz')).status, 200);
  });

  it('COTSTREAM_METRICS_ALLOW: 403 outside the allowlist (even with the token), 200 inside', async () => {
    srv = await startTestServer(pki.dir, {}, { COTSTREAM_METRICS_ALLOW: '10.0.0.0/8, 192.168.1.7' });
    assert.equal((await get(srv.metricsPort, '/metrics')).status, 403);
    assert.equal((await get(srv.metricsPort, '/healthz')).status, 200);
    await srv.stop();

    srv = await startTestServer(pki.dir, {}, { COTSTREAM_METRICS_ALLOW: '10.0.0.0/8,127.0.0.0/8', COTSTREAM_METRICS_TOKEN: TOKEN });
    assert.equal((await get(srv.metricsPort, '/metrics')).status, 401);
    assert.equal((await get(srv.metricsPort, '/metrics', { authorization: `Bearer ${TOKEN}` })).status, 200);
    await srv.stop();

    srv = await startTestServer(pki.dir, {}, { COTSTREAM_METRICS_ALLOW: '192.0.2.1', COTSTREAM_METRICS_TOKEN: TOKEN });
    assert.equal((await get(srv.metricsPort, '/metrics', { authorization: `Bearer ${TOKEN}` })).status, 403);
    await srv.stop();

    // on a dual-stack listener an IPv4 peer arrives as ::ffff:127.0.0.1 and still matches 127.0.0.1
    srv = await startTestServer(pki.dir, { metricsHost: '::' }, { COTSTREAM_METRICS_ALLOW: '127.0.0.1' });
    assert.equal((await get(srv.metricsPort, '/metrics')).status, 200);
    await srv.stop();
    srv = await startTestServer(pki.dir, { metricsHost: '::' }, { COTSTREAM_METRICS_ALLOW: '127.0.0.2/32' });
    assert.equal((await get(srv.metricsPort, '/metrics')).status, 403);
  });

  it('allowlist entries: IPv4, IPv6, CIDR; bad entries are refused with the offending text', () => {
    const list = parseAllowList('127.0.0.1, 10.1.0.0/16, 2001:db8::/32, ::1')!;
    assert.ok(list.check('127.0.0.1', 'ipv4'));
    assert.ok(list.check('10.1.200.3', 'ipv4'));
    assert.ok(!list.check('10.2.0.1', 'ipv4'));
    assert.ok(list.check('2001:db8:1::5', 'ipv6'));
    assert.ok(list.check('::1', 'ipv6'));
    assert.ok(!list.check('2001:db9::1', 'ipv6'));
    assert.equal(parseAllowList('  '), null);
    assert.throws(() => parseAllowList('10.0.0.0/33'), /COTSTREAM_METRICS_ALLOW: bad prefix in "10.0.0.0\/33"/);
    assert.throws(() => parseAllowList('metrics.example.com'), /"metrics\.example\.com" is not an IP address or CIDR/);
  });

  it('a bad allowlist is a configuration error: the real process exits 2 before listening', async () => {
    const err = await spawnServer(['--certs-dir', pki.dir], { COTSTREAM_METRICS_ALLOW: '10.0.0.0/40' }).then(() => null, (e: Error) => e);
    assert.ok(err);
    assert.match(err.message, /server exited \(2\) before listening: cotstream: COTSTREAM_METRICS_ALLOW: bad prefix in "10\.0\.0\.0\/40"/);
    assert.throws(() => buildConfig({ metricsAllow: 'not-an-ip' }, {}), /"not-an-ip" is not an IP address or CIDR/);
  });

  it('/readyz is 503 while the bus is down, /healthz stays 200; unknown paths 404, writes 405', async () => {
    srv = await startTestServer(pki.dir);
    const p = srv.metricsPort;
    assert.equal((await get(p, '/readyz')).status, 200);
    await srv.server.bus.close();
    assert.equal((await get(p, '/readyz')).status, 503);
    assert.equal((await get(p, '/healthz')).status, 200);
    assert.match((await get(p, '/metrics')).body, /^cot_bus_up 0$/m);
    assert.equal((await get(p, '/nope')).status, 404);
    const post = await fetch(`http://127.0.0.1:${p}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
  });
});
