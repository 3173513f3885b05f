// `cotstream start --help` is what an operator reads: every option names its default and its
// environment variable, and no default prints as an empty string.
import assert from 'node:assert/strict';
import { CommanderError } from 'commander';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { join, resolve } from 'node:path';
import { buildProgram } from '../../src/cli.ts';
import { OPTIONS, buildConfig, exposedSecrets, redisInClear } from '../../src/config.ts';
import { ROOT } from '../helpers/server.ts';
import { tempDir } from '../helpers/tmp.ts';
import { makePki } from '../helpers/pki.ts';

async function help(args: string[]): Promise<string> {
  let out = '';
  const program = buildProgram().exitOverride().configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  await assert.rejects(program.parseAsync(args, { from: 'user' }), (e: CommanderError) => e.code === 'commander.helpDisplayed');
  return out;
}

describe('cli: cotstream start --help', function () {
  it('documents a default and an environment variable for every option', async () => {
    const text = await help(['start', '--help']);
    const entries = text.split('Options:')[1]!.split(/\n(?=  -)/).filter((e) => /--[a-z]/.test(e)).map((e) => e.replace(/\s+/g, ' '));
    assert.ok(entries.length > 20, `${entries.length} options`);
    for (const e of entries) {
      const flag = /--[a-z-]+/.exec(e)![0];
      if (flag === '--help') continue;
      assert.match(e, /default/i, `${flag} documents its default: ${e}`);
      assert.doesNotMatch(e, /\[default: \]/, `${flag} shows an empty default: ${e}`);
      assert.match(e, /env [A-Z_]+/, `${flag} names its environment variable: ${e}`);
    }
  });
});

describe('cli: the README documents every start option', function () {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.split('\n## Configuration\n')[1]?.split('\n## ')[0] ?? '';

  it('names each flag with its environment variables and its default in the Configuration table', () => {
    assert.ok(section.length > 0, 'README has a "## Configuration" section');
    const rows = section.split('\n').filter((l) => l.startsWith('| `--'));
    for (const o of OPTIONS) {
      const flag = o.flag.split(' ')[0]!;
      const row = rows.find((r) => r.split('|')[1]!.includes(`\`${flag}\``));
      assert.ok(row, `README Configuration table has a row for ${flag}`);
      for (const env of o.env) assert.ok(row.includes(`\`${env}`), `the ${flag} row names ${env}: ${row}`);
      if (o.kind !== 'bool' && o.def !== undefined && o.def !== '') assert.ok(row.includes(`\`${o.def}\``), `the ${flag} row shows its default ${o.def}: ${row}`);
    }
    for (const s of ['--config', 'COTSTREAM_CONFIG', 'SIGTERM', 'SIGHUP']) assert.ok(section.includes(s), `the section mentions ${s}`);
  });

  it('config-file keys are the flags in camelCase, as the README says', () => {
    for (const o of OPTIONS) {
      if (o.kind === 'bool') continue; // --no-X is key X (true/false), documented separately
      const camel = o.flag.split(' ')[0]!.slice(2).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
      assert.equal(o.key, camel, `${o.flag}: config key ${o.key}`);
    }
  });
});

describe('config: the Redis TLS files', () => {
  it('a missing one is named by its flag; a certificate without its key is refused', () => {
    assert.throws(() => buildConfig({ redis: 'rediss://127.0.0.1:6380', redisCa: '/nonexistent/ca.pem' }, {}), /--redis-ca: \/nonexistent\/ca\.pem does not exist/);
    assert.throws(() => buildConfig({}, { COTSTREAM_REDIS_CERT: '/nonexistent/c.pem', COTSTREAM_REDIS_KEY: '/nonexistent/c.key' }), /--redis-cert: .* does not exist/);
    assert.throws(() => buildConfig({ redisCert: '/nonexistent/c.pem' }, {}), /--redis-cert and --redis-key go together/);
  });

  it('are refused with a plaintext redis:// URL, and checked at start with rediss:// (no certificate, a key others read, not the pair, encrypted)', async () => {
    const pki = await makePki(['rc']);
    const c = pki.clients.rc!;
    const ca = pki.paths.ca;
    const good = { redis: 'rediss://127.0.0.1:6380', redisCa: ca, redisCert: c.cert, redisKey: c.key };
    assert.equal(buildConfig(good, {}).redisKey, c.key);
    // one "s" dropped: the password and every event would cross the network in clear
    assert.throws(() => buildConfig({ ...good, redis: 'redis://:pw@10.0.0.5:6379' }, {}), /--redis-ca, --redis-cert, --redis-key given, but --redis is a plaintext redis:\/\/ URL: use rediss:\/\//);
    assert.throws(() => buildConfig({ redisCa: ca }, { COTSTREAM_REDIS_URL: 'redis://10.0.0.5' }), /--redis-ca given, but COTSTREAM_REDIS_URL \(--redis\) is a plaintext/);
    const empty = join(pki.dir, 'empty.pem');
    writeFileSync(empty, '');
    assert.throws(() => buildConfig({ ...good, redisCa: empty }, {}), /--redis-ca: no certificate in/);
    assert.throws(() => buildConfig({ ...good, redisCa: c.key }, {}), /--redis-ca: no certificate in/);
    assert.throws(() => buildConfig({ ...good, redisKey: pki.paths.key }, {}), /--redis-key: .*server\.key is not the key of .*rc\.pem/);
    const enc = join(pki.dir, 'enc.key');
    writeFileSync(enc, createPrivateKey(readFileSync(c.key)).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret-pass' }), { mode: 0o600 });
    assert.throws(() => buildConfig({ ...good, redisKey: enc }, {}), /--redis-key: .*enc\.key is passphrase-protected/);
    chmodSync(c.key, 0o644);
    assert.throws(() => buildConfig(good, {}), /--redis-key: private key .* is accessible by other users \(mode 644\)/);
    pki.cleanup();
  });
});

describe('config: a plaintext Redis on another machine', () => {
  it('is named for the start warning; TLS or this machine is not', () => {
    assert.equal(redisInClear('redis://:pw@10.0.0.5:6379'), '10.0.0.5');
    assert.equal(redisInClear('redis://Redis.Example.org'), 'redis.example.org');
    assert.equal(redisInClear('redis://[2001:db8::7]:6379'), '2001:db8::7');
    for (const quiet of ['rediss://10.0.0.5:6380', 'redis://127.0.0.1:6379', 'redis://localhost', 'redis://[::1]:6379', 'redis://127.1.2.3', '']) assert.equal(redisInClear(quiet), '', quiet);
  });
});

describe('config: a config file holding secrets', () => {
  it('is named for the start warning when other users can read it', () => {
    const dir = tempDir('cfgsecret');
    const f = join(dir, 'c.json');
    writeFileSync(f, JSON.stringify({ metricsToken: 'T0ken', redis: 'redis://:pw@10.0.0.5:6379' }), { mode: 0o644 });
    chmodSync(f, 0o644);
    assert.deepEqual(exposedSecrets(f), ['metricsToken', 'the Redis password (redis)']);
    writeFileSync(f, JSON.stringify({ redis: 'rediss://10.0.0.5:6380?password=pw' }));
    assert.deepEqual(exposedSecrets(f), ['the Redis password (redis)']);
    writeFileSync(f, JSON.stringify({ port: 8089, redis: 'redis://10.0.0.5:6379' }));
    assert.deepEqual(exposedSecrets(f), [], 'no secret');
    writeFileSync(f, JSON.stringify({ metricsToken: 'T0ken' }));
    chmodSync(f, 0o600);
    assert.deepEqual(exposedSecrets(f), [], 'private');
  });
});

describe('config: values that would misbehave', () => {
  it('a duration past what Node timers hold (24.8 days) is refused, not a timer firing every millisecond', () => {
    assert.equal(buildConfig({ idleTimeout: '2147483647' }, {}).idleTimeout, 2 ** 31 - 1);
    assert.throws(() => buildConfig({ idleTimeout: '3000000000' }, {}), /--idle-timeout: at most 2147483647 ms/);
    assert.throws(() => buildConfig({}, { COTSTREAM_HANDSHAKE_TIMEOUT_MS: '36000m' }), /COTSTREAM_HANDSHAKE_TIMEOUT_MS: at most/);
  });

  it('a config file that is not JSON is located by line and column, without quoting its text (it may hold a token)', () => {
    const dir = tempDir('cfgjson');
    const f = join(dir, 'c.json');
    for (const [text, where] of [
      [`{\n  "port": 8089,\n  "metricsToken": 'SQtokSECRET9f2'\n}`, /not valid JSON/],
      [`{\n  "metricsToken": SQtokSECRET9f2\n}`, /not valid JSON/],
      [`{\n  "metricsToken": "SQtokSECRET9f2",\n}`, /at line 3, column 1/],
    ] as const) {
      writeFileSync(f, text);
      assert.throws(() => buildConfig({}, {}, f), (e: Error) => where.test(e.message) && !/SQtok|SECRET|9f2/.test(e.message));
    }
  });
});

describe('config: relative paths', function () {
  it('in a config file they are taken from the file\'s directory; as flags, from the working directory', () => {
    const dir = tempDir('cfg');
    try {
      const file = join(dir, 'etc', 'cotstream.json');
      mkdirSync(join(dir, 'etc'));
      const absCa = join(dir, 'ca.pem'); // an absolute path stays as it is (the file must exist: checked at start)
      writeFileSync(absCa, '');
      writeFileSync(file, JSON.stringify({ certsDir: 'pki', crl: '../lists/crl.json', redisCa: absCa, cert: 'server.pem' }));
      const cfg = buildConfig({}, {}, file);
      assert.equal(cfg.certsDir, join(dir, 'etc', 'pki'));
      assert.equal(cfg.crl, join(dir, 'lists', 'crl.json'));
      assert.equal(cfg.cert, join(dir, 'etc', 'server.pem'));
      assert.equal(cfg.redisCa, absCa);
      assert.equal(cfg.key, join(dir, 'etc', 'pki', 'server.key')); // the default follows certsDir
      // a flag wins over the file and is taken from the working directory
      const byFlag = buildConfig({ certsDir: 'pki' }, {}, file);
      assert.equal(byFlag.certsDir, resolve('pki'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
