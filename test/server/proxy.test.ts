// PROXY protocol from the TCP load balancer in front of the nodes (--proxy-protocol). The parser
// on its own (v1, v2, byte by byte, hostile input), then a real HAProxy (Debian package, installed
// by `make test`) writing the headers in front of a real server, clients on their own addresses.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseProxyHeader, ProxyHeaderError } from '../../src/net/proxy.ts';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';
import { freePort } from '../helpers/net.ts';
import { HaProxy, HAPROXY, readmeRecipe } from '../helpers/haproxy.ts';
import { tempDir } from '../helpers/tmp.ts';

const V2_SIG = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');

function v2(cmd: number, fam: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  V2_SIG.copy(h);
  h[12] = 0x20 | cmd;
  h[13] = fam;
  h.writeUInt16BE(body.length, 14);
  return Buffer.concat([h, body]);
}

function v2tcp4(src: string, sport: number, tlv = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(12);
  src.split('.').forEach((o, i) => { b[i] = Number(o); });
  [10, 0, 0, 1].forEach((o, i) => { b[4 + i] = o; });
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(8089, 10);
  return v2(1, 0x11, Buffer.concat([b, tlv]));
}

describe('PROXY protocol header parser', () => {
  it('v1: TCP4, TCP6 and UNKNOWN; the length covers the CRLF', () => {
    const h = Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234 8089\r\n\x16\x03\x01', 'latin1');
    assert.deepEqual(parseProxyHeader(h), { length: h.length - 3, peer: { address: '203.0.113.7', port: 51234 } });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 4000 8089\r\n')), { length: 46, peer: { address: '2001:db8::7', port: 4000 } });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { length: 15, peer: null });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n')), { length: 35, peer: null });
  });

  it('v2: TCP4 with TLVs (AWS, HAProxy add some), TCP6 in RFC 5952 form, LOCAL, UNSPEC', () => {
    const tlv = Buffer.from([0xea, 0x00, 0x05, 0x01, 0x76, 0x70, 0x63, 0x65]); // AWS VPC endpoint id TLV
    const h = Buffer.concat([v2tcp4('198.51.100.23', 40000, tlv), Buffer.from([0x16, 0x03])]);
    assert.deepEqual(parseProxyHeader(h), { length: h.length - 2, peer: { address: '198.51.100.23', port: 40000 } });
    const b6 = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000007', 'hex').copy(b6, 0);
    Buffer.from('20010db8000000000000000000000001', 'hex').copy(b6, 16);
    b6.writeUInt16BE(5555, 32);
    b6.writeUInt16BE(8089, 34);
    assert.deepEqual(parseProxyHeader(v2(1, 0x21, b6)), { length: 52, peer: { address: '2001:db8::7', port: 5555 } });
    const mapped = Buffer.alloc(36);
    Buffer.from('00000000000000000000ffffc0000221', 'hex').copy(mapped, 0);
    assert.deepEqual(parseProxyHeader(v2(1, 0x21, mapped))?.peer, { address: '::ffff:192.0.2.33', port: 0 }, 'IPv4-mapped, spelled as Node spells it');
    assert.equal(net.isIPv6('::ffff:192.0.2.33'), true);
    assert.deepEqual(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0))), { length: 16, peer: null }, 'LOCAL: the balancer itself');
    assert.deepEqual(parseProxyHeader(v2(1, 0x00, Buffer.alloc(0))), { length: 16, peer: null }, 'UNSPEC');
  });

  it('needs more bytes until the header is complete, whatever the split', () => {
    for (const h of [Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234 8089\r\n'), v2tcp4('203.0.113.7', 51234)]) {
      for (let i = 0; i < h.length; i++) assert.equal(parseProxyHeader(h.subarray(0, i)), null, `${i} of ${h.length} bytes`);
      assert.deepEqual(parseProxyHeader(h)?.peer, { address: '203.0.113.7', port: 51234 });
    }
  });

  it('refuses what is not a PROXY header: TLS first, bad fields, over-long, other versions', () => {
    const bad = [
      Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), // a TLS ClientHello: the balancer sends no header
      Buffer.from('GET / HTTP/1.1\r\n'),
      Buffer.from('PROXY TCP4 999.0.113.7 10.0.0.1 51234 8089\r\n'),
      Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 99999 8089\r\n'),
      Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n'),
      Buffer.from('PROXY TCP5 203.0.113.7 10.0.0.1 1 2\r\n'),
      Buffer.from('PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n'),
      Buffer.from('PROXY ' + 'A'.repeat(120)),
      Buffer.from('PROXY TCP4 ' + '1'.repeat(100) + '\r\n'),
      Buffer.concat([V2_SIG, Buffer.from([0x11, 0x11, 0x00, 0x0c])]), // version 1 in a v2 signature
      Buffer.concat([V2_SIG, Buffer.from([0x22, 0x11, 0x00, 0x0c])]), // command 2
      Buffer.concat([V2_SIG, Buffer.from([0x21, 0x11, 0x10, 0x01])]), // 4,097 bytes of body
      v2(1, 0x11, Buffer.alloc(8)), // IPv4 body too short
      v2(1, 0x21, Buffer.alloc(20)), // IPv6 body too short
    ];
    for (const b of bad) assert.throws(() => parseProxyHeader(b), ProxyHeaderError, JSON.stringify(b.toString('latin1')));
  });

  it('random bytes never throw anything but ProxyHeaderError', () => {
    for (let i = 0; i < 20000; i++) {
      const base = i % 2 ? v2tcp4('203.0.113.7', 1) : Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234 8089\r\n');
      const b = Buffer.from(base.subarray(0, 1 + Math.floor(Math.random() * base.length)));
      for (let k = 0; k < 3; k++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
      try { parseProxyHeader(b); } catch (err) { assert.ok(err instanceof ProxyHeaderError, String(err)); }
    }
  });
});

/** A real HAProxy in TCP mode: `v2` and `v1` frontends, connecting to the server from 127.0.0.2. */
async function haproxyFor(backendPort: number): Promise<HaProxy> {
  const [v2port, v1port] = [await freePort(), await freePort()];
  const cfg = [
    'global', '  maxconn 200',
    'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
    `frontend f2`, `  bind 127.0.0.1:${v2port}`, '  default_backend b2',
    `frontend f1`, `  bind 127.0.0.1:${v1port}`, '  default_backend b1',
    `backend b2`, `  server s 127.0.0.1:${backendPort} source 127.0.0.2 send-proxy-v2`,
    `backend b1`, `  server s 127.0.0.1:${backendPort} source 127.0.0.2 send-proxy`,
  ].join('\n') + '\n';
  return HaProxy.run(cfg, v2port, v1port);
}

describe('e2e: clients behind HAProxy with --proxy-protocol', function () {
  this.timeout(60000);
  let pki: SharedPki;
  let srv: TestServer;
  let lb: HaProxy;
  const open: Array<{ destroy(): void }> = [];

  before(async () => {
    pki = await testPki();
    srv = await startTestServer(pki.dir, { proxyProtocol: '127.0.0.2', maxClientsPerIp: '1', handshakeTimeout: '1500' });
    lb = await haproxyFor(srv.port);
  });
  afterEach(() => { while (open.length) open.pop()!.destroy(); });
  after(async () => { await lb?.stop(); await srv?.stop(); });

  const accepted = (cn: string) => srv.logs.filter((l) => l.audit === 'accepted' && l.cn === cn);

  it('the client address the balancer reports is the one logged and limited, with v2 and v1 headers', async () => {
    const a = await CotClient.connect(lb.v2port, await pki.client('alpha'), '127.0.0.1', '127.0.0.5');
    open.push(a.sock);
    const b = await CotClient.connect(lb.v1port, await pki.client('bravo'), '127.0.0.1', '127.0.0.6');
    open.push(b.sock);
    await a.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'alpha announced');
    await b.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'bravo announced');
    b.send(sa('uid-bravo', 'BRAVO'));
    await a.waitFor((f) => f.some((x) => x.includes('uid="uid-bravo"')), 5000, 'an event through the balancer');
    await sleep(50);
    assert.match(String(accepted('alpha')[0]?.remote), /^127\.0\.0\.5:\d+$/, 'v2: the client, not the balancer');
    assert.match(String(accepted('bravo')[0]?.remote), /^127\.0\.0\.6:\d+$/, 'v1: the client, not the balancer');
    // --max-clients-per-ip 1 counts clients, not the balancer: a second one from .5 is refused
    const before = await srv.metric('cot_handshakes_total', { result: 'limit' });
    await assert.rejects(CotClient.connect(lb.v2port, await pki.client('charlie'), '127.0.0.1', '127.0.0.5'));
    assert.equal(await srv.metric('cot_handshakes_total', { result: 'limit' }), before + 1);
    const refused = srv.logs.filter((l) => l.audit === 'refused' && l.reason === 'limit');
    assert.match(String(refused.at(-1)?.remote), /^127\.0\.0\.5:\d+$/);
  });

  it('header and the first TLS bytes in one segment: the bytes after the header reach TLS', async () => {
    // a balancer of our own that holds the ClientHello and writes it with the header, in one write
    const relay = net.createServer((inb) => {
      inb.once('data', (hello: Buffer) => {
        const out = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: '127.0.0.2' }, () => {
          out.write(Buffer.concat([v2tcp4('192.0.2.44', 4444), hello]));
          inb.pipe(out).pipe(inb);
        });
        out.on('error', () => inb.destroy());
        inb.on('error', () => out.destroy());
        open.push(out);
      });
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    try {
      const e = await CotClient.connect((relay.address() as net.AddressInfo).port, await pki.client('echo'));
      open.push(e.sock);
      await e.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'announced through the relay');
      assert.match(String(accepted('echo')[0]?.remote), /^192\.0\.2\.44:4444$/);
    } finally {
      relay.close();
    }
  });

  it('a connection from the balancer without a header is refused (error), one that sends nothing times out', async () => {
    const errors = await srv.metric('cot_handshakes_total', { result: 'error' });
    // straight from the balancer's address, TLS first: HAProxy misconfigured without send-proxy
    await assert.rejects(CotClient.connect(srv.port, await pki.client('alpha'), '127.0.0.1', '127.0.0.2'));
    assert.equal(await srv.metric('cot_handshakes_total', { result: 'error' }), errors + 1);
    const line = srv.logs.filter((l) => l.audit === 'refused' && l.reason === 'error').at(-1)!;
    assert.match(String(line.msg), /PROXY protocol header/);
    assert.match(String(line.err), /no PROXY protocol header/);

    const timeouts = await srv.metric('cot_handshakes_total', { result: 'timeout' });
    const silent = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: '127.0.0.2' });
    open.push(silent);
    const t0 = Date.now();
    await new Promise((r) => silent.once('close', r));
    assert.ok(Date.now() - t0 >= 1400, 'closed at --handshake-timeout');
    assert.equal(await srv.metric('cot_handshakes_total', { result: 'timeout' }), timeouts + 1);
  });

  it('a balancer connection reset in the middle of its header costs nothing else', async () => {
    for (let i = 0; i < 20; i++) {
      const s = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: '127.0.0.2' });
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      s.write(i % 2 ? 'PROXY TCP4 203.0.' : v2tcp4('203.0.113.7', 1).subarray(0, 20));
      await sleep(10);
      s.resetAndDestroy(); // RST: ECONNRESET on the server's side of a half-read header
    }
    await sleep(200);
    const d = await CotClient.connect(lb.v2port, await pki.client('golf'), '127.0.0.1', '127.0.0.7');
    open.push(d.sock);
    await d.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'the server still serves');
  });

  it('anyone else connects directly, and a PROXY header from them is not believed', async () => {
    const d = await CotClient.connect(srv.port, await pki.client('delta'), '127.0.0.1', '127.0.0.1');
    open.push(d.sock);
    await sleep(50);
    assert.match(String(accepted('delta')[0]?.remote), /^127\.0\.0\.1:\d+$/);
    // a client claiming to be 10.9.9.9: its "header" is just bad TLS
    const s = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: '127.0.0.1' });
    open.push(s);
    await new Promise((r) => s.once('connect', r));
    s.write('PROXY TCP4 10.9.9.9 10.0.0.1 1234 8089\r\n');
    await new Promise((r) => s.once('close', r));
    assert.ok(!srv.logs.some((l) => String(l.remote).startsWith('10.9.9.9')), 'a spoofed address reached the log');
  });
});

describe('e2e: the README\'s HAProxy recipe, as written', function () {
  this.timeout(60000);
  it('is valid without warnings, and with Redis gone from every node still lets devices in', async () => {
    const block = readmeRecipe();
    // a node keeps a silent client while its latest SA is valid, up to 15 min (a stationary ATAK
    // sends every 180 s): the balancer must not cut it first
    for (const side of ['client', 'server']) {
      const m = new RegExp(`timeout ${side} (\\d+)m\\b`).exec(block);
      assert.ok(m && Number(m[1]) > 15, `the recipe's timeout ${side} outlasts the node's 15-min hold: ${m?.[0]}`);
    }
    const pki = await testPki();
    // one node, twice in each backend; its Redis is a port nobody listens on: /readyz 503
    const srv = await startTestServer(pki.dir, { proxyProtocol: '127.0.0.1', redis: `redis://127.0.0.1:${await freePort()}` });
    let lb: HaProxy | undefined;
    const dir = tempDir('recipe');
    try {
      const port = await freePort();
      const cfg = block
        .replace('bind :8089', `bind 127.0.0.1:${port}`)
        .replace(/10\.0\.0\.1[12]:8089 check port 9089/g, `127.0.0.1:${srv.port} check port ${srv.metricsPort}`);
      assert.ok(!/10\.0\.0\./.test(cfg) && cfg.includes(`bind 127.0.0.1:${port}`), `the recipe's addresses moved:\n${cfg}`);
      fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
      const check = spawnSync(HAPROXY, ['-c', '-f', path.join(dir, 'haproxy.cfg')], { encoding: 'utf8' });
      assert.equal(check.status, 0, check.stdout + check.stderr);
      assert.doesNotMatch(check.stdout + check.stderr, /WARNING|ALERT/, 'haproxy -c has no warnings');
      assert.equal((await fetch(`http://127.0.0.1:${srv.metricsPort}/readyz`)).status, 503);

      lb = await HaProxy.run(cfg, port);
      // HAProxy starts its servers up: wait until its checks find every node unready
      for (const deadline = Date.now() + 20000; (lb.out.match(/Server cotstream\/[ab] is DOWN/g) ?? []).length < 2;) {
        assert.ok(Date.now() < deadline, `haproxy never marked the nodes down:\n${lb.out}`);
        await sleep(100);
      }
      const c = await CotClient.connect(port, await pki.client('alpha'));
      try {
        c.send(sa('uid-alpha', 'ALPHA'));
        await c.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'a device served through the fallback backend');
      } finally {
        c.close();
      }
      assert.ok(srv.logs.some((l) => l.audit === 'accepted' && l.cn === 'alpha'));
    } finally {
      await lb?.stop();
      await srv.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a node that stops (a rolling restart): devices reconnecting before the checks see it down are sent to another node, not refused', async () => {
    const pki = await testPki();
    const [a, b] = await Promise.all([startTestServer(pki.dir, { proxyProtocol: '127.0.0.1' }), startTestServer(pki.dir, { proxyProtocol: '127.0.0.1' })]);
    let lb: HaProxy | undefined;
    try {
      const port = await freePort();
      const nodes = [a, b];
      let i = 0;
      const cfg = readmeRecipe()
        .replace('bind :8089', `bind 127.0.0.1:${port}`)
        .replace(/10\.0\.0\.1[12]:8089 check port 9089/g, () => { const n = nodes[i++ % 2]; return `127.0.0.1:${n.port} check port ${n.metricsPort}`; });
      lb = await HaProxy.run(cfg, port);
      await a.stop(); // its listener is closed at once; HAProxy needs 3 failed checks (6 s) to know
      // leastconn prefers the stopped node (no connections): without a redispatch these were refused
      const served: string[] = [];
      for (let k = 0; k < 6; k++) {
        let c: CotClient | undefined;
        try {
          c = await CotClient.connect(port, await pki.client('alpha'));
          await c.waitFor((f) => f.some((x) => x.includes('t-x-takp-v')), 5000, 'the announcement');
          served.push('ok');
        } catch (err) {
          served.push((err as Error).message.slice(0, 60));
        } finally {
          c?.close();
        }
      }
      assert.deepEqual(served, Array(6).fill('ok'), lb.out);
    } finally {
      await lb?.stop();
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
