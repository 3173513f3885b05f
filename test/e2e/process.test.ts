// The real `cotstream start` process: starts, serves, stops cleanly on SIGTERM/SIGINT, refuses bad setups.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { chmodSync, copyFileSync, existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makePki, testPki, type SharedPki } from '../helpers/pki.ts';
import { issueServer } from '../../src/pki/ca.ts';
import { canonicalSerial } from '../../src/auth/serial.ts';
import { spawnServer, metricValue, ROOT } from '../helpers/server.ts';
import { CotClient, sa, ping, sleep } from '../helpers/client.ts';
import { freePort } from '../helpers/net.ts';
import { tempDir } from '../helpers/tmp.ts';

describe('e2e: cotstream start as a process', function () {
  this.timeout(30000);
  let pki: SharedPki;
  before(async () => { pki = await testPki(); });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`stops cleanly on ${signal}: closes sessions, exits 0`, async () => {
      const srv = await spawnServer(['--certs-dir', pki.dir]);
      const a = await CotClient.connect(srv.port, await pki.client('alpha'));
      const b = await CotClient.connect(srv.port, await pki.client('bravo'));
      a.send(sa('proc-a', 'PA'));
      await b.waitFor((f) => f.some((x) => x.includes('proc-a')));
      a.send(ping());
      await a.waitFor((f) => f.some((x) => x.includes('t-x-c-t-r')));
      const code = await srv.stop(signal);
      assert.equal(code, 0, srv.stderr);
      await a.waitClosed();
      await b.waitClosed();
      assert.ok(srv.lines.some((l) => l.audit === 'stopped'));
      assert.equal(srv.lines.filter((l) => l.audit === 'closed' && l.reason === 'shutdown').length, 2);
    });
  }

  it('a stalled log reader costs log lines, counted and reported, not memory or service (--log-buffer)', async () => {
    // debug level: one ~500-byte line per routed event
    const srv = await spawnServer(['--certs-dir', pki.dir, '--log-level', 'debug', '--log-buffer', '64k', '--rate-events', '0', '--rate-bytes', '0']);
    const metrics = async () => metricValue(await (await fetch(`http://127.0.0.1:${srv.metricsPort}/metrics`)).text(), 'cot_log_lines_dropped_total');
    try {
      const a = await CotClient.connect(srv.port, await pki.client('alpha'));
      const b = await CotClient.connect(srv.port, await pki.client('bravo'));
      await b.waitFor((f) => f.length >= 1); // the announcement: bravo is registered
      assert.equal(await metrics(), 0);
      // nobody reads the server's stdout from here: the pipe fills, then the 64 KiB log buffer
      srv.proc.stdout!.pause();
      const N = 4000;
      const ev = sa('log-flood', 'FLOOD');
      for (let i = 0; i < N; i++) a.send(ev);
      // every event still reaches bravo: the server is not waiting on its log
      await b.waitFor((f) => f.filter((x) => x.includes('uid="log-flood"')).length === N, 20000, `${N} events`);
      const dropped = await metrics();
      // ~2 MB of log against ~150 KiB of pipe, stream and log buffer: most lines are dropped
      assert.ok(dropped > N / 2, `dropped ${dropped} of ${N} debug lines`);
      srv.proc.stdout!.resume();
      const deadline = Date.now() + 10000;
      const reported = () => srv.lines.filter((l) => l.audit === 'log_dropped').reduce((n, l) => n + Number(l.lines), 0);
      while (reported() < dropped && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(reported(), dropped, 'one warning says how many lines were lost');
      assert.equal(await metrics(), dropped, 'nothing dropped once stdout is read again');
      a.close();
      b.close();
    } finally {
      srv.proc.stdout!.resume(); // else its exit would wait on the full pipe (pino writes what is pending)
      await srv.stop();
    }
  });

  it('SIGTERM still stops the server when nobody reads its log (pending lines are given up after a grace period)', async () => {
    const srv = await spawnServer(['--certs-dir', pki.dir, '--log-level', 'debug', '--rate-events', '0', '--rate-bytes', '0']);
    const a = await CotClient.connect(srv.port, await pki.client('alpha'));
    const b = await CotClient.connect(srv.port, await pki.client('bravo'));
    // the announcement: bravo is registered (its TLS client side finishes before the server's)
    await b.waitFor((f) => f.length >= 1);
    srv.proc.stdout!.pause(); // and never resumed: a log reader that hung
    const N = 2000;
    const ev = sa('log-stall', 'STALL');
    for (let i = 0; i < N; i++) a.send(ev);
    await b.waitFor((f) => f.filter((x) => x.includes('uid="log-stall"')).length === N, 20000, `${N} events`);
    const t0 = Date.now();
    const code = await Promise.race([srv.stop('SIGTERM'), new Promise<string>((r) => setTimeout(() => r('still running'), 15000))]);
    if (code === 'still running') srv.proc.kill('SIGKILL');
    assert.equal(code, 0, `exit after SIGTERM with stdout unread (${Date.now() - t0} ms)`);
    await a.waitClosed();
    await b.waitClosed();
  });

  it('refuses to start with a private key other users can read, naming the file', () => {
    const dir = tempDir('badkey');
    for (const f of ['ca.pem', 'server.pem', 'server.key']) copyFileSync(join(pki.dir, f), join(dir, f));
    chmodSync(join(dir, 'server.key'), 0o644);
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', dir, '--port', '0', '--metrics-port', 'off'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`${join(dir, 'server.key').replace(/[.]/g, '\\.')}.*chmod 600`));
  });

  it('refuses to start with a CA file that holds no certificate (empty, or the CA key given by mistake), naming the file', () => {
    const dir = tempDir('noca');
    for (const f of ['server.pem', 'server.key']) copyFileSync(join(pki.dir, f), join(dir, f));
    chmodSync(join(dir, 'server.key'), 0o600);
    for (const [content, why] of [['', /no certificate in the CA file .*ca\.pem: /], [readFileSync(join(pki.dir, 'server.key'), 'utf8'), /no certificate in the CA file .*ca\.pem \(it holds a private key/]] as const) {
      writeFileSync(join(dir, 'ca.pem'), content);
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', dir, '--port', '0', '--metrics-port', 'off'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
      assert.equal(r.status, 1);
      assert.match(r.stderr, why);
      assert.doesNotMatch(r.stderr, /BEGIN|PRIVATE KEY-/);
    }
  });

  it('refuses to start when others can change whom it trusts (CA certificate, revocation list directory), naming the file', () => {
    const start = (dir: string, extra: string[] = []) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', dir, '--port', '0', '--metrics-port', 'off', ...extra], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
    const dir = tempDir('trust');
    try {
      for (const f of ['ca.pem', 'server.pem', 'server.key']) copyFileSync(join(pki.dir, f), join(dir, f));
      chmodSync(join(dir, 'ca.pem'), 0o666);
      let r = start(dir);
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`refusing to start: other users can change the CA certificate .*${join(dir, 'ca.pem').replace(/[.]/g, '\\.')}.*mode 666.*chmod o-w`));
      chmodSync(join(dir, 'ca.pem'), 0o644);
      // the list's directory writable by all (not sticky): the list could be swapped for an empty one
      const open = tempDir('crldir');
      chmodSync(open, 0o777);
      r = start(dir, ['--crl', join(open, 'crl.json')]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`other users can replace the revocation list .*its directory ${open.replace(/[.]/g, '\\.')} is writable by all`));
      // a link in a safe directory to a CA certificate in that directory: judged where it points
      copyFileSync(join(dir, 'ca.pem'), join(open, 'ca.pem'));
      symlinkSync(join(open, 'ca.pem'), join(dir, 'ca-link.pem'));
      r = start(dir, ['--ca', join(dir, 'ca-link.pem')]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`other users can replace the CA certificate .*its directory ${open.replace(/[.]/g, '\\.')} is writable by all`));
      rmSync(open, { recursive: true, force: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a passphrase-protected server key is named with the fix; FTS_UNENCRYPTED_KEYDIR is read before FTS_SERVER_KEYDIR', async () => {
    const dir = tempDir('fts');
    try {
      for (const f of ['ca.pem', 'server.pem', 'server.key']) copyFileSync(join(pki.dir, f), join(dir, f));
      const enc = join(dir, 'server.enc.key');
      execFileSync('openssl', ['pkey', '-in', join(dir, 'server.key'), '-aes256', '-passout', 'pass:supersecret', '-out', enc]);
      chmodSync(enc, 0o600);
      const env = { ...process.env, FTS_SERVER_KEYDIR: enc };
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', dir, '--port', '0', '--metrics-port', 'off'], { cwd: ROOT, encoding: 'utf8', timeout: 20000, env });
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`server private key ${enc.replace(/[.]/g, '\\.')} is passphrase-protected.*openssl pkey.*FTS_UNENCRYPTED_KEYDIR`));
      assert.doesNotMatch(r.stderr, /bad decrypt/);
      // FreeTAKServer's environment names both; its unencrypted copy is the one used
      const srv = await spawnServer(['--certs-dir', dir], { FTS_SERVER_KEYDIR: enc, FTS_UNENCRYPTED_KEYDIR: join(dir, 'server.key') });
      try {
        const c = await CotClient.connect(srv.port, await pki.client('alpha'));
        c.close();
      } finally {
        assert.equal(await srv.stop(), 0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('/healthz answers while start() still waits for a Redis that does not answer; /readyz 503 until ready', async () => {
    // a peer that accepts the connection and never says a word, as a hung Redis
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const redisPort = (silent.address() as net.AddressInfo).port;
    const metricsPort = await freePort();
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', pki.dir, '--host', '127.0.0.1', '--port', '0',
      '--metrics-host', '127.0.0.1', '--metrics-port', String(metricsPort), '--redis', `redis://127.0.0.1:${redisPort}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    const status = (p: string) => new Promise<number>((resolve) => {
      http.get({ host: '127.0.0.1', port: metricsPort, path: p }, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', () => resolve(0));
    });
    try {
      let health = 0;
      const deadline = Date.now() + 15000;
      while (health !== 200 && Date.now() < deadline) { health = await status('/healthz'); if (health !== 200) await sleep(50); }
      assert.equal(health, 200, 'liveness answered');
      assert.ok(!out.includes('"audit":"listening"'), 'answered before start() was done (while it waited for Redis)');
      assert.equal(await status('/readyz'), 503);
    } finally {
      proc.kill('SIGKILL');
      silent.close();
    }
  });

  it('refuses to start without certificates and says how to make them', () => {
    const dir = tempDir('nocerts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', dir, '--port', '0', '--metrics-port', 'off'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cotstream certs init/);
  });

  it('rejects a bad option value with a clear message and exit code 2', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--idle-timeout', 'soon'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--idle-timeout: expected milliseconds/);
  });

  it('SIGHUP: a renewed server certificate serves new connections, live sessions stay; a key that is not its own is refused', async () => {
    const own = await makePki(['alpha', 'bravo']);
    const srv = await spawnServer(['--certs-dir', own.dir]);
    const creds = (n: string) => ({ cert: own.clients[n]!.cert, key: own.clients[n]!.key, ca: own.paths.ca });
    const peerSerial = (c: CotClient) => canonicalSerial(c.sock.getPeerX509Certificate()!.serialNumber);
    const waitLine = async (pred: (l: Record<string, unknown>) => boolean, what: string) => {
      for (const t0 = Date.now(); !srv.lines.some(pred);) {
        assert.ok(Date.now() - t0 < 5000, `no log line: ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const open: CotClient[] = [];
    try {
      const alpha = await CotClient.connect(srv.port, creds('alpha'));
      open.push(alpha);
      const old = peerSerial(alpha);
      const renewed = await issueServer({ certsDir: own.dir, hosts: ['localhost', '127.0.0.1'], force: true });
      process.kill(srv.proc.pid!, 'SIGHUP');
      await waitLine((l) => l.audit === 'reload' && l.serial === renewed.serial, 'server certificate reloaded');
      const bravo = await CotClient.connect(srv.port, creds('bravo'));
      open.push(bravo);
      assert.equal(peerSerial(bravo), renewed.serial, 'a new connection gets the renewed certificate');
      assert.notEqual(renewed.serial, old);
      // the session that was up keeps going
      alpha.send(ping('alpha-ping'));
      await alpha.waitFor((f) => f.some((x) => x.includes('t-x-c-t-r')), 5000, 'pong on the old session');

      // the old key beside the new certificate: refused, the renewed pair stays in use
      copyFileSync(join(own.dir, 'server.key.old'), own.paths.key);
      chmodSync(own.paths.key, 0o600);
      process.kill(srv.proc.pid!, 'SIGHUP');
      await waitLine((l) => l.audit === 'reload' && l.level === 50 && /not the key of/.test(String(l.err)), 'mismatched key refused');
      const again = await CotClient.connect(srv.port, creds('alpha'));
      open.push(again);
      assert.equal(peerSerial(again), renewed.serial);
    } finally {
      for (const c of open) c.close();
      assert.equal(await srv.stop(), 0);
      own.cleanup();
    }
  });

  it('an IPv6 listener is logged as a client dials it ([::1]:port), and serves', async () => {
    const srv = await spawnServer(['--certs-dir', pki.dir, '--host', '::1', '--metrics-host', '::1']);
    try {
      const l = srv.lines.find((x) => x.audit === 'listening')!;
      assert.match(String(l.tls), /^\[::1\]:\d+$/);
      assert.match(String(l.metrics), /^\[::1\]:\d+$/);
      const c = await CotClient.connect(srv.port, await pki.client('alpha'), '::1');
      c.send(ping('v6-ping'));
      await c.waitFor((f) => f.some((x) => x.includes('t-x-c-t-r')), 5000, 'pong over IPv6');
      c.close();
    } finally {
      assert.equal(await srv.stop(), 0);
    }
  });

  it('a misspelt COTSTREAM_ variable is named in a warning with the one it likely meant (the server still starts)', async () => {
    // COTSTREAM_REDIS for COTSTREAM_REDIS_URL: without the warning, a lone node on the in-process bus
    const srv = await spawnServer(['--certs-dir', pki.dir], { COTSTREAM_REDIS: 'redis://127.0.0.1:1', COTSTREAM_IDLE_TIMEOUT: '5m' });
    try {
      const w = srv.lines.find((l) => l.audit === 'config' && l.level === 40);
      assert.ok(w, 'a warning about the unknown variables');
      for (const e of ['COTSTREAM_IDLE_TIMEOUT (did you mean COTSTREAM_IDLE_TIMEOUT_MS?)', 'COTSTREAM_REDIS (did you mean COTSTREAM_REDIS_URL?)']) {
        assert.ok((w.unknownEnv as string[]).includes(e), `${e} in ${JSON.stringify(w.unknownEnv)}`);
      }
      assert.ok(srv.lines.some((l) => l.bus === 'memory'), 'and it says which bus it took');
    } finally {
      assert.equal(await srv.stop(), 0);
    }
  });

  it('exit status: a command line it cannot use is 2 with the usage; a command that fails at its work is 1 with its one error line', () => {
    const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
    const unknown = run(['start', '--prot', '1']);
    assert.equal(unknown.status, 2, unknown.stderr);
    assert.match(unknown.stderr, /unknown option '--prot'[\s\S]*Usage: cotstream start/);
    // a mistyped secret flag: the value it carried is not echoed
    for (const args of [['start', '--metrics-tokn=T0kenSecret'], ['certs', 'client', 'x', "--pasword=ab'T0kenSecret"], ['certs', 'client', 'x', '-pT0kenSecret']]) {
      const typo = run(args);
      assert.equal(typo.status, 2, typo.stderr);
      assert.match(typo.stderr, /unknown option '(--metrics-tokn=|--pasword=|-p)…'/);
      assert.doesNotMatch(typo.stderr, /T0ken|Secret/);
    }
    const missing = run(['certs', 'client']);
    assert.equal(missing.status, 2, missing.stderr);
    assert.match(missing.stderr, /missing required argument 'name'/);

    const dir = tempDir('exit');
    try {
      for (const f of ['ca.pem', 'ca.key']) copyFileSync(join(pki.dir, f), join(dir, f));
      const exists = run(['certs', 'init', '--certs-dir', dir]);
      assert.equal(exists.status, 1, exists.stderr);
      assert.equal(exists.stderr.trim().split('\n').length, 1, `one line, not the help after it:\n${exists.stderr}`);
      assert.match(exists.stderr, /^error: refusing to overwrite/);
      // a bad value given to a command is a usage error too: 2, one line saying which
      for (const [args, said] of [
        [['certs', 'client', 'bad/name', '--certs-dir', dir], /client name "bad\/name" must be/],
        [['certs', 'client', 'xray', '--certs-dir', dir, '--password', 'AtakAtak'], /is a well-known default/],
        [['certs', 'init', '--certs-dir', dir, '--bits', '1000', '--force'], /--bits must be an integer from 2048/],
        [['revoke', 'zzzz', '--certs-dir', dir], /"zzzz" is neither a certificate file nor a hex serial/],
      ] as Array<[string[], RegExp]>) {
        const r = run(args);
        assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
        assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
        assert.match(r.stderr, said);
      }
      assert.ok(!existsSync(join(dir, 'clients', 'xray.p12')), 'nothing written for a refused password');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.match(run(['start', '--help']).stdout, /Exit status: 0 .* 1 .* 2 a usage or configuration error/s);
    // the version, as TAK clients are told it (t-x-takp-v serverVersion) and package.json says
    const v = run(['--version']);
    assert.equal(v.status, 0);
    assert.equal(v.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  });

  it('takes option values from --config (camelCase keys) under env and flags', async () => {
    const dir = tempDir('config');
    const file = join(dir, 'cotstream.json');
    writeFileSync(file, JSON.stringify({ idleTimeout: '7s', rateEvents: 41, maxClientsPerIp: 3, metricsPort: 9 }));
    // the file says rateEvents 41, the environment 42; spawnServer's --metrics-port 0 beats the file's 9
    const srv = await spawnServer(['--certs-dir', pki.dir, '--config', file], { COTSTREAM_RATE_EVENTS: '42' });
    try {
      const cfg = (srv.lines.find((l) => l.audit === 'start') as { config: Record<string, unknown> }).config;
      assert.equal(cfg.idleTimeout, 7000);
      assert.equal(cfg.maxClientsPerIp, 3);
      assert.equal(cfg.rateEvents, 42);
      assert.notEqual(srv.metricsPort, 9);
    } finally {
      await srv.stop();
    }
  });

  // Each of these used to be accepted and run with something else than what the operator wrote.
  // The certs dir does not exist: a setting that slipped through would end in exit 1 (no CA), not 2.
  const nowhere = join(tmpdir(), 'cotstream-no-such-certs-dir');
  const refusals: Array<{ what: string; args: (dir: string) => string[]; env?: (dir: string) => NodeJS.ProcessEnv; message: RegExp }> = [
    {
      what: '--handshake-timeout 0 (Node would wait its own 120 s)',
      args: () => ['--handshake-timeout', '0'],
      message: /--handshake-timeout: must be at least 1 ms/,
    },
    {
      what: 'COTSTREAM_HANDSHAKE_TIMEOUT_MS=0',
      args: () => [],
      env: () => ({ COTSTREAM_HANDSHAKE_TIMEOUT_MS: '0' }),
      // named as the operator wrote it: the variable, with the flag it stands for
      message: /COTSTREAM_HANDSHAKE_TIMEOUT_MS \(--handshake-timeout\): must be at least 1 ms/,
    },
    {
      what: 'a misspelt key in the config file (the option would silently keep its default)',
      args: (dir) => { writeFileSync(join(dir, 'c.json'), '{"metrics_port": "off", "idleTimeout": 1000}'); return ['--config', join(dir, 'c.json')]; },
      message: /config file .*c\.json: unknown key "metrics_port" \(known: host, port, /,
    },
    {
      what: 'a config file that is not a JSON object',
      args: (dir) => { writeFileSync(join(dir, 'a.json'), '[{"port": 8089}]'); return ['--config', join(dir, 'a.json')]; },
      message: /config file .*a\.json: expected a JSON object/,
    },
    {
      what: 'COTSTREAM_CONFIG pointing at a file that holds null',
      args: (dir) => { writeFileSync(join(dir, 'n.json'), 'null'); return []; },
      env: (dir) => ({ COTSTREAM_CONFIG: join(dir, 'n.json') }),
      message: /config file .*n\.json: expected a JSON object/,
    },
    {
      what: 'a Redis URL that does not parse',
      args: () => ['--redis', 'redis://127.0.0.1:99999'],
      message: /--redis: not a valid URL/,
    },
  ];
  for (const t of refusals) {
    it(`refuses ${t.what}: exit 2 with a clear message`, () => {
      const dir = tempDir('refuse');
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', nowhere, '--port', '0', '--metrics-port', 'off', ...t.args(dir)], {
        cwd: ROOT, encoding: 'utf8', timeout: 20000, env: { ...process.env, ...t.env?.(dir) },
      });
      assert.equal(r.status, 2, `exit ${r.status}: ${r.stderr}`);
      assert.match(r.stderr, t.message);
    });
  }
});
