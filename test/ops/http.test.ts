// Issue 8: /metrics restrictions (bearer token, IP/CIDR allowlist) are enforced and off by
// default; /healthz and /readyz answer load balancers without credentials.
import assert from 'node:assert/strict';
import net from 'node:net';
import { pino } from 'pino';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { metricValue, startTestServer, spawnServer, type TestServer } from '../helpers/server.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';
import { OPTIONS, buildConfig } from '../../src/config.ts';
import { HTTP_LIMITS, startHttp } from '../../src/ops/http.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { fdBudget, openFileLimit } from '../../src/net/fdlimit.ts';
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
    assert.throws(() => parseAllowList('10.0.0.0/33'), /--metrics-allow \(COTSTREAM_METRICS_ALLOW\): bad prefix in "10.0.0.0\/33"/);
    assert.throws(() => parseAllowList('metrics.example.com'), /"metrics\.example\.com" is not an IP address or CIDR/);
    // a trailing slash was /0: every address allowed (to /metrics, or to send PROXY headers)
    for (const bad of ['10.9.8.7/', '2001:db8::1/', '10.0.0.0/ 8', '10.0.0.0/8.0', '10.0.0.0/0x8']) assert.throws(() => parseAllowList(bad), /bad prefix/, bad);
    assert.throws(() => parseAllowList('10.0.0.0/8/99'), /not an IP address or CIDR/);
    assert.equal(parseAllowList('10.0.0.0/8')!.check('11.0.0.1', 'ipv4'), false);
  });

  it('a bad allowlist is a configuration error: the real process exits 2 before listening', async () => {
    const err = await spawnServer(['--certs-dir', pki.dir], { COTSTREAM_METRICS_ALLOW: '10.0.0.0/40' }).then(() => null, (e: Error) => e);
    assert.ok(err);
    assert.match(err.message, /server exited \(2\) before listening: cotstream: --metrics-allow \(COTSTREAM_METRICS_ALLOW\): bad prefix in "10\.0\.0\.0\/40"/);
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

describe('ops: the HTTP listener cannot be used to hold connections (or the process\'s descriptors)', function () {
  this.timeout(60000);
  let pki: SharedPki;
  const socks: net.Socket[] = [];
  before(async () => { pki = await testPki(); });
  afterEach(() => { while (socks.length) socks.pop()!.destroy(); });

  /** `n` TCP connections from `from` that send nothing; resolves once each is connected or closed */
  const hold = (port: number, n: number, from: string): Promise<net.Socket[]> => Promise.all(Array.from({ length: n }, () => new Promise<net.Socket>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    socks.push(s);
    s.on('error', () => undefined);
    s.resume(); // read what comes (a 408), so the server's FIN is seen and 'close' follows
    s.once('connect', () => resolve(s));
    s.once('close', () => resolve(s));
  })));
  const waitUntil = async (pred: () => boolean, ms: number, what: string): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  };
  const closedSoon = (s: net.Socket, ms: number): Promise<boolean> => new Promise((resolve) => {
    if (s.destroyed) { resolve(true); return; }
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => { clearTimeout(t); resolve(true); });
  });

  it(`one address holds at most ${HTTP_LIMITS.maxPerIp} connections; the next is refused, counted and logged once; other addresses still scrape`, async () => {
    const srv = await startTestServer(pki.dir);
    try {
      const mine = await hold(srv.metricsPort, HTTP_LIMITS.maxPerIp, '127.0.0.2');
      const [extra] = await hold(srv.metricsPort, 1, '127.0.0.2');
      assert.ok(await closedSoon(extra, 2000), 'the connection over the per-address limit is closed');
      for (const s of mine) assert.ok(!s.destroyed, 'the connections within the limit stay open');
      const r = await get(srv.metricsPort, '/metrics');
      assert.equal(r.status, 200, 'another address still scrapes');
      assert.match(r.body, /^cot_http_connections_refused_total 1$/m);
      const lines = srv.logs.filter((l) => l.audit === 'refused' && l.listener === 'http');
      assert.equal(lines.length, 1);
      assert.equal(lines[0].reason, 'limit');
      assert.match(String(lines[0].remote), /^127\.0\.0\.2:\d+$/);
      // a slot freed is a slot usable again
      mine[0].destroy();
      await sleep(100);
      const [again] = await hold(srv.metricsPort, 1, '127.0.0.2');
      assert.ok(!(await closedSoon(again, 300)), 'a freed slot is taken again');
    } finally {
      await srv.stop();
    }
  });

  it('a connection that sends nothing, or its request too slowly, is closed after the request timeout', async () => {
    const http = await startHttp({ host: '127.0.0.1', port: 0, token: '', allow: '', ready: () => true, requestTimeout: 500 }, new Metrics({ defaultMetrics: false }), pino({ level: 'silent' }));
    try {
      const port = (http.address() as net.AddressInfo).port;
      const [silent, slow] = await hold(port, 2, '127.0.0.1');
      slow.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => { if (!slow.destroyed) slow.write('X-Drip: 1\r\n'); }, 100);
      try {
        const t0 = Date.now();
        assert.ok(await closedSoon(silent, 3000), 'the silent connection is still open after 3 s');
        assert.ok(await closedSoon(slow, 3000), 'the dripping request is still open after 3 s');
        assert.ok(Date.now() - t0 >= 400, 'closed before its timeout');
      } finally {
        clearInterval(drip);
      }
    } finally {
      await new Promise((r) => http.close(r));
    }
  });

  it('the real process under RLIMIT_NOFILE 256: hundreds of idle HTTP connections leave CoT clients served; client limits fit the descriptors and are counted', async () => {
    const srv = await spawnServer(['--certs-dir', pki.dir], {}, { openFiles: 256 });
    try {
      // the default --max-clients (10,000) cannot be honoured with 256 descriptors: said at start
      const warn = srv.lines.find((l) => l.audit === 'limits');
      assert.ok(warn, 'a limits warning at start');
      const maxClients = Number(warn.maxClients);
      assert.ok(maxClients > 0 && maxClients < 256, `max clients ${maxClients}`);
      // 300 idle HTTP connections from 30 addresses: before, each took a descriptor until none
      // was left and new CoT clients were closed by libuv without a word
      const httpConns: net.Socket[] = [];
      for (let i = 0; i < 30; i++) httpConns.push(...await hold(srv.metricsPort, 10, `127.0.2.${i + 1}`));
      // all but the HTTP share of the descriptors are refused (closed by the server)
      const httpMax = fdBudget(256, 10000, HTTP_LIMITS.maxConnections).http;
      await waitUntil(() => httpConns.filter((c) => c.destroyed).length >= 300 - httpMax, 20000, 'the HTTP connections over the limit to be closed');
      const a = await CotClient.connect(srv.port, await pki.client('alpha'));
      const b = await CotClient.connect(srv.port, await pki.client('bravo'));
      try {
        a.send(sa('fd-alpha', 'FDA'));
        await b.waitFor((f) => f.some((x) => x.includes('uid="fd-alpha"')), 5000, 'alpha at bravo');
      } finally {
        a.close();
        b.close();
      }
      while (socks.length) socks.pop()!.destroy();
      await sleep(200);
      const m1 = await (await fetch(`http://127.0.0.1:${srv.metricsPort}/metrics`)).text();
      assert.ok(metricValue(m1, 'cot_http_connections_refused_total') >= 300 - httpMax, 'the HTTP connections over the limit are counted');
      // raw connections to the CoT port past the (cut) client limit: refused by us, counted
      const raw: net.Socket[] = [];
      for (let i = 0; i < 20; i++) raw.push(...await hold(srv.port, 12, `127.0.3.${i + 1}`));
      await waitUntil(() => raw.filter((c) => c.destroyed).length >= 240 - maxClients, 20000, 'the connections over the client limit to be closed');
      const m2 = await (await fetch(`http://127.0.0.1:${srv.metricsPort}/metrics`)).text();
      assert.ok(metricValue(m2, 'cot_handshakes_total', { result: 'limit' }) >= 240 - maxClients, 'refusals over the client limit are counted');
      assert.ok(srv.lines.some((l) => l.audit === 'refused' && l.reason === 'limit'), 'and logged');
    } finally {
      await srv.stop();
    }
  });
});

describe('ops: connection limits fit the file descriptors', () => {
  it('reads RLIMIT_NOFILE and cuts the client and HTTP limits to it, keeping a reserve', () => {
    const limit = openFileLimit();
    assert.ok(limit === null || limit > 0);
    assert.deepEqual(fdBudget(null, 10000, 256), { clients: 10000, http: 256 });
    assert.deepEqual(fdBudget(1_048_576, 10000, 256), { clients: 10000, http: 256 });
    // 1024 descriptors: 64 kept, an eighth of the rest for HTTP, the rest for clients
    assert.deepEqual(fdBudget(1024, 10000, 256), { clients: 840, http: 120 });
    assert.deepEqual(fdBudget(1024, 0, 256), { clients: 840, http: 120 }, 'unlimited is cut too');
    assert.deepEqual(fdBudget(1024, 100, 256), { clients: 100, http: 120 });
    const tiny = fdBudget(70, 10000, 256);
    assert.ok(tiny.clients >= 1 && tiny.http >= 4);
  });
});
