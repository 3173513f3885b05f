import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { Command, CommanderError } from 'commander';
import { RevocationList, type RevocationChange } from '../../src/auth/revocation.ts';
import { parseRevocationFile, pemToDer } from '../../src/auth/revocation-file.ts';
import { parseRawJson, RawNumber } from '../../src/auth/json-raw.ts';
import { registerRevocationCommands } from '../../src/auth/revocation-commands.ts';
import { serialToBigInt } from '../../src/auth/serial.ts';
import { makePki, memoryLogger, openssl, opensslCrl, opensslStatus, type TestPki } from '../helpers/pki.ts';
import { runCommands } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - t0;
}

/** revoke / crl commands in-process, capturing output; a command error rejects with its message. */
function cli(args: string[]): Promise<string> {
  return runCommands(registerRevocationCommands, args);
}

describe('raw JSON parser', () => {
  it('keeps numbers as their exact text', () => {
    const v = parseRawJson('{"a": [1, -2.5e3, 340282366920938463463374607431768211455], "b": "x\\"y", "c": null, "d": true}') as Record<string, unknown>;
    const a = v.a as RawNumber[];
    assert.equal(a[2]!.text, '340282366920938463463374607431768211455');
    assert.equal(a[1]!.toNumber(), -2500);
    assert.equal(v.b, 'x"y');
    assert.equal(v.c, null);
    assert.equal(v.d, true);
  });
  it('rejects what JSON.parse rejects', () => {
    for (const bad of ['', '{', '{"a":1,}', '[1 2]', '{"a" 1}', '01', '"\\x"', '{"a":1} x', 'nul', '[.5]', '{a:1}']) {
      assert.throws(() => parseRawJson(bad), SyntaxError, bad);
      assert.throws(() => JSON.parse(bad), SyntaxError, bad); // the two agree
    }
  });
});

describe('revocation list', function () {
  let pki: TestPki;
  let dir: string;
  let alpha: string;
  let bravo: string;
  before(async () => {
    pki = await makePki(['alpha', 'bravo']);
    alpha = pki.clients.alpha!.serial;
    bravo = pki.clients.bravo!.serial;
  });
  after(() => pki.cleanup());
  beforeEach(() => {
    dir = tempDir('crl');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function load(file: string, content: string | Buffer) {
    fs.writeFileSync(file, content);
    const { log, lines } = memoryLogger();
    const list = new RevocationList({ path: file, log });
    list.load();
    return { list, lines };
  }

  const refusesAlphaOnly = (list: RevocationList) => {
    assert.ok(list.lookup(alpha), 'alpha revoked');
    assert.equal(list.lookup(bravo), undefined, 'bravo not revoked');
  };

  it('FreeTAKServer style: a PEM X.509 CRL in a file named .json', () => {
    const { list } = load(path.join(dir, 'FTS_CRL.json'), opensslCrl(pki, [alpha, 'abcdef']));
    refusesAlphaOnly(list);
    assert.equal(list.size, 2);
    assert.equal(list.format, 'pem');
    assert.equal(list.lookup(alpha)!.reason, 'key_compromise');
    assert.ok(list.nextUpdate && list.nextUpdate.getTime() > Date.now() + 99 * 86400_000);
  });

  it('a DER CRL', () => {
    const { list } = load(path.join(dir, 'crl.der'), pemToDer(opensslCrl(pki, [alpha])));
    refusesAlphaOnly(list);
    assert.equal(list.format, 'der');
  });

  it('JSON with a decimal serial above 2^53, parsed exactly (not through a JS number)', () => {
    const dec = serialToBigInt(alpha).toString(10);
    assert.ok(BigInt(dec) > 2n ** 53n);
    // the lossy route would find a different serial: prove the test would catch it
    assert.notEqual(BigInt(Math.round(Number(dec))).toString(16), alpha);
    const text = `{"issuer": "CN=cotstream CA", "last_update": "2026-01-01T00:00:00Z", "next_update": "2099-01-01T00:00:00Z",
      "revoked": [{"serial_number": ${dec}, "revocation_date": "2026-01-02T03:04:05Z", "reason": "key_compromise"}]}`;
    const { list } = load(path.join(dir, 'crl.json'), text);
    refusesAlphaOnly(list);
    assert.deepEqual(list.lookup(alpha), { serial: alpha, reason: 'key_compromise', date: '2026-01-02T03:04:05.000Z' });
  });

  it('a decimal serial written as a string (a hand edit, str(serial)) still revokes: long digit strings are read both ways, with a warning', () => {
    const dec = serialToBigInt(alpha).toString(10);
    const { list, lines } = load(path.join(dir, 'crl.json'), JSON.stringify({ revoked: [{ serial_number: dec, reason: 'key_compromise' }] }));
    refusesAlphaOnly(list);
    assert.equal(list.lookup(alpha)!.reason, 'key_compromise');
    assert.ok(list.lookup(dec), 'and the hex reading, as strings are read');
    assert.ok(lines.some((l) => l.level === 40 && /is a string of digits: revoked both as hex .* and as the decimal number/.test(String(l.msg))), 'warned');
    // a short digit string is hex only: openssl ca's sequential serials ("10" is 0x10, not 0x0a)
    const { list: short, lines: quiet } = load(path.join(dir, 'crl2.json'), JSON.stringify({ revoked: [{ serial_number: '10' }] }));
    assert.ok(short.lookup('10'));
    assert.equal(short.lookup('a'), undefined);
    assert.equal(short.size, 1);
    assert.ok(!quiet.some((l) => /string of digits/.test(String(l.msg))));
  });

  it('JSON with colon-hex (upper case, leading zero byte) and plain hex serials', () => {
    const colon = ('00' + (alpha.length % 2 ? '0' : '') + alpha).toUpperCase().match(/../g)!.join(':');
    const { list } = load(path.join(dir, 'crl.json'), JSON.stringify({ revoked: [{ serial_number: colon, reason: 'superseded' }] }));
    refusesAlphaOnly(list);
    const { list: plain } = load(path.join(dir, 'crl2.json'), JSON.stringify({ revoked: [{ serial_number: bravo.toUpperCase() }] }));
    assert.ok(plain.lookup(bravo));
    assert.equal(plain.lookup(alpha), undefined);
  });

  it('a missing file means nothing revoked, and says so', () => {
    const { log, lines } = memoryLogger();
    const list = new RevocationList({ path: path.join(dir, 'nope.json'), log });
    list.load();
    assert.equal(list.size, 0);
    assert.ok(lines.some((l) => l.level === 40 && /not found/.test(String(l.msg))));
  });

  it('a signed copy that appears while the list file is missing is enforced at the next look (SIGHUP)', () => {
    // revoke wrote crl.json and crl.pem, and crl.json vanished before the server read it
    const { log, lines } = memoryLogger();
    const file = path.join(dir, 'crl.json');
    const copy = path.join(dir, 'crl.pem');
    const list = new RevocationList({ path: file, log, signedCopy: copy });
    list.load();
    assert.equal(list.size, 0);
    assert.ok(list.fileOk, 'a fresh install is fine');
    fs.writeFileSync(copy, opensslCrl(pki, [alpha]));
    list.reload();
    refusesAlphaOnly(list);
    assert.ok(!list.fileOk);
    assert.ok(lines.some((l) => l.level === 50 && /enforcing the signed copy/.test(String(l.msg))));
    assert.equal(lines.filter((l) => /not found: nothing is revoked/.test(String(l.msg))).length, 1, 'the fresh-install line once');
  });

  it('a corrupt file at start is refused; written over a good one it keeps the good one in force', async () => {
    const file = path.join(dir, 'crl.json');
    fs.writeFileSync(file, '{"revoked": [');
    assert.throws(() => new RevocationList({ path: file, log: memoryLogger().log }).load(), /crl\.json cannot be used/);

    const { list, lines } = load(file, JSON.stringify({ revoked: [{ serial_number: alpha }] }));
    const errors: Error[] = [];
    list.on('error', (e: Error) => errors.push(e));
    for (const bad of ['{"revoked": [', '', 'garbage', '{"revoked": [{"serial_number": "xyz"}]}', '{"revoked": [{"serial_number": 1.5}]}', '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n', '{}']) {
      fs.writeFileSync(file, bad);
      assert.equal(list.reload(), false);
      refusesAlphaOnly(list);
    }
    assert.equal(errors.length, 7);
    assert.ok(lines.filter((l) => l.level === 50).length >= 7);
    // the same broken bytes again are not re-reported
    assert.equal(list.reload(), false);
    assert.equal(errors.length, 7);
    // an unreadable file is an error too, never "nothing revoked" (a directory in its place: mode
    // 000 would not stop root, which the tests may run as)
    fs.rmSync(file);
    fs.mkdirSync(file);
    assert.equal(list.reload(), false);
    refusesAlphaOnly(list);
    assert.equal(errors.length, 8, 'reported');
    fs.rmdirSync(file);
    // a good file again takes over
    fs.writeFileSync(file, JSON.stringify({ revoked: [{ serial_number: bravo }] }));
    assert.equal(list.reload(), true);
    assert.ok(list.lookup(bravo) && !list.lookup(alpha));
  });

  it('an expired next_update warns and keeps enforcing: nobody locked out, nobody let in', () => {
    const { list, lines } = load(
      path.join(dir, 'crl.json'),
      JSON.stringify({ next_update: '2020-01-01T00:00:00Z', revoked: [{ serial_number: alpha }] }),
    );
    assert.ok(list.expired);
    refusesAlphaOnly(list);
    assert.ok(lines.some((l) => l.level === 40 && /next_update has passed/.test(String(l.msg))));
  });

  it('watch: a change (atomic rename or in-place write) is in force within 1 s and emits the difference', async () => {
    const file = path.join(dir, 'crl.json');
    const { list, lines } = load(file, JSON.stringify({ revoked: [] }));
    list.watch();
    try {
      const changes: RevocationChange[] = [];
      list.on('change', (c: RevocationChange) => changes.push(c));

      // rename over (what our writer and most editors do)
      fs.writeFileSync(file + '.new', JSON.stringify({ revoked: [{ serial_number: alpha }] }));
      fs.renameSync(file + '.new', file);
      const t1 = await waitFor(() => !!list.lookup(alpha), 1000, 'rename to take effect');
      assert.deepEqual(changes[0], { added: [alpha], removed: [] });

      // in place
      fs.writeFileSync(file, JSON.stringify({ revoked: [{ serial_number: bravo }] }));
      const t2 = await waitFor(() => !!list.lookup(bravo) && !list.lookup(alpha), 1000, 'in-place write to take effect');
      assert.deepEqual(changes[1], { added: [bravo], removed: [alpha] });
      assert.ok(t1 < 1000 && t2 < 1000);

      // deleted: the last list stays in force (a deleted file or an unmounted volume must not
      // let a revoked device back in), one error line; an empty list written clears it
      fs.rmSync(file);
      await waitFor(() => lines.some((l) => l.level === 50 && /is gone/.test(String(l.msg))), 1500, 'the deletion to be noticed');
      await sleep(600); // past a poll and a debounce: nothing else happens
      assert.ok(list.lookup(bravo), 'bravo is still revoked after the file was deleted');
      assert.equal(list.reload(), false); // SIGHUP: same
      assert.ok(list.lookup(bravo));
      assert.equal(lines.filter((l) => /is gone/.test(String(l.msg))).length, 1, 'said once');
      fs.writeFileSync(file, JSON.stringify({ revoked: [] }));
      await waitFor(() => list.size === 0, 1000, 'an empty list to clear it');
    } finally {
      list.close();
    }
  });

  it('watch falls back to polling when fs.watch reports nothing', async () => {
    const file = path.join(dir, 'crl.json');
    const { list } = load(file, JSON.stringify({ revoked: [] }));
    list.watch();
    // simulate a filesystem without inotify: drop the directory watcher
    (list as unknown as { watcher?: fs.FSWatcher }).watcher?.close();
    try {
      fs.writeFileSync(file, JSON.stringify({ revoked: [{ serial_number: alpha }] }));
      await waitFor(() => !!list.lookup(alpha), 1000, 'poll to notice');
    } finally {
      list.close();
    }
  });
});

describe('revoke / crl commands', function () {
  let pki: TestPki;
  before(async () => {
    pki = await makePki(['alpha', 'bravo', 'charlie']);
  });
  after(() => pki.cleanup());

  const chainWithCrl = (crlPem: string) => {
    const f = path.join(pki.dir, 'chain-with-crl.pem');
    fs.writeFileSync(f, fs.readFileSync(pki.paths.ca, 'utf8') + fs.readFileSync(crlPem, 'utf8'));
    return f;
  };

  it('revoke by certificate file and by serial writes crl.json + a crl.pem openssl verifies', async () => {
    const a = pki.clients.alpha!;
    const out = await cli(['revoke', a.cert, '--certs-dir', pki.dir, '--reason', 'key_compromise']);
    assert.match(out, new RegExp(`revoked ${a.serial} \\(CN=alpha, O=cotstream\\), reason key_compromise`));

    // by serial, colon-hex as openssl prints it; the subject is found among issued clients
    const b = pki.clients.bravo!;
    const colon = (b.serial.length % 2 ? '0' + b.serial : b.serial).toUpperCase().match(/../g)!.join(':');
    assert.match(await cli(['revoke', colon, '--certs-dir', pki.dir]), /CN=bravo.*reason unspecified/);

    const json = JSON.parse(fs.readFileSync(pki.paths.crl, 'utf8'));
    assert.deepEqual(Object.keys(json), ['issuer', 'last_update', 'next_update', 'revoked']);
    assert.equal(json.issuer, 'CN=cotstream CA, O=cotstream');
    assert.deepEqual(
      json.revoked.map((r: Record<string, string>) => [r.serial_number, r.reason, r.subject]),
      [
        [a.serial, 'key_compromise', 'CN=alpha, O=cotstream'],
        [b.serial, 'unspecified', 'CN=bravo, O=cotstream'],
      ],
    );
    assert.ok(Date.parse(json.next_update) > Date.now() + 89 * 86400_000);

    // the signed CRL: verifies against the CA, revokes exactly alpha and bravo
    assert.match(opensslStatus(['crl', '-in', pki.paths.crlPem, '-noout', '-CAfile', pki.paths.ca, '-verify']).output, /verify OK/);
    const chain = chainWithCrl(pki.paths.crlPem);
    const va = opensslStatus(['verify', '-crl_check', '-CAfile', chain, a.cert]);
    assert.notEqual(va.code, 0);
    assert.match(va.output, /certificate revoked/);
    assert.notEqual(opensslStatus(['verify', '-crl_check', '-CAfile', chain, b.cert]).code, 0);
    assert.match(openssl(['verify', '-crl_check', '-CAfile', chain, pki.clients.charlie!.cert]), /: OK/);
    assert.match(openssl(['crl', '-in', pki.paths.crlPem, '-noout', '-text']), /Key Compromise/);

    // a crl.pem signed by another CA does not verify (the check can fail)
    const other = await makePki([]);
    try {
      assert.doesNotMatch(opensslStatus(['crl', '-in', pki.paths.crlPem, '-noout', '-CAfile', other.paths.ca, '-verify']).output, /verify OK/);
    } finally {
      other.cleanup();
    }
  });

  it('revoking twice is harmless; crl list shows serial, reason, date, subject', async () => {
    const a = pki.clients.alpha!;
    const before = JSON.parse(fs.readFileSync(pki.paths.crl, 'utf8'));
    assert.match(await cli(['revoke', a.serial, '--certs-dir', pki.dir, '--reason', 'superseded']), /already revoked/);
    const after = JSON.parse(fs.readFileSync(pki.paths.crl, 'utf8'));
    assert.deepEqual(after.revoked, before.revoked); // original reason and date kept
    const list = await cli(['crl', 'list', '--certs-dir', pki.dir]);
    assert.match(list, /serial\s+reason\s+date\s+subject/);
    assert.match(list, new RegExp(`${a.serial}\\s+key_compromise\\s+\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\s+CN=alpha`));
    assert.equal(list.trim().split('\n').length, 4); // header line, column header, 2 entries
  });

  it('--reason also takes the RFC 5280 / openssl spelling (keyCompromise, CACompromise) and records ours', async () => {
    const crl = path.join(pki.dir, 'spelling.json');
    assert.match(await cli(['revoke', 'abc1', '--certs-dir', pki.dir, '--crl', crl, '--reason', 'keyCompromise']), /revoked abc1, reason key_compromise/);
    assert.match(await cli(['revoke', 'abc2', '--certs-dir', pki.dir, '--crl', crl, '--reason', 'CACompromise']), /reason ca_compromise/);
    assert.match(await cli(['revoke', 'abc3', '--certs-dir', pki.dir, '--crl', crl, '--reason', 'cessationOfOperation']), /reason cessation_of_operation/);
    const json = JSON.parse(fs.readFileSync(crl, 'utf8'));
    assert.deepEqual(json.revoked.map((r: Record<string, string>) => r.reason), ['key_compromise', 'ca_compromise', 'cessation_of_operation']);
  });

  it('refuses garbage: a bad serial, a bad reason, a corrupt list (left untouched)', async () => {
    await assert.rejects(cli(['revoke', 'not-a-serial', '--certs-dir', pki.dir]), /neither a certificate file nor a hex serial/);
    await assert.rejects(cli(['revoke', 'ab', '--certs-dir', pki.dir, '--reason', 'lost']), /Allowed choices/);
    const bad = path.join(pki.dir, 'broken.json');
    fs.writeFileSync(bad, '{"revoked": [');
    await assert.rejects(cli(['revoke', 'ab', '--certs-dir', pki.dir, '--crl', bad]), /not a valid revocation list/);
    assert.equal(fs.readFileSync(bad, 'utf8'), '{"revoked": [');
  });

  it('a list other than the default leaves <certs-dir>/crl.pem alone (the default list\'s signed copy); a serial or file that is not ours is said so', async () => {
    await cli(['crl', 'refresh', '--certs-dir', pki.dir]);
    const before = fs.readFileSync(pki.paths.crlPem, 'utf8');
    const other = path.join(pki.dir, 'other.json');
    const out = await cli(['revoke', pki.clients.charlie!.cert, '--certs-dir', pki.dir, '--crl', other]);
    assert.match(out, new RegExp(`wrote ${other.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(`));
    assert.doesNotMatch(out, /crl\.pem/);
    assert.equal(fs.readFileSync(pki.paths.crlPem, 'utf8'), before, 'the default list\'s signed copy untouched');
    await cli(['crl', 'refresh', '--certs-dir', pki.dir, '--crl', other]);
    assert.equal(fs.readFileSync(pki.paths.crlPem, 'utf8'), before, 'by crl refresh too');
    // a typo in a serial: revoked (the certificate file may be gone), with a warning
    assert.match(await cli(['revoke', 'deadbeef', '--certs-dir', pki.dir, '--crl', other]), /warning: no certificate in .*clients has serial deadbeef: revoking it anyway/);
    assert.doesNotMatch(await cli(['revoke', pki.clients.charlie!.serial, '--certs-dir', pki.dir, '--crl', other]), /warning/);
    await assert.rejects(cli(['revoke', path.join(pki.dir, 'clients', 'nobody.pem'), '--certs-dir', pki.dir, '--crl', other]), /nobody\.pem: no such certificate file/);
  });

  it('an FTS PEM list stays a PEM CRL when revoked into (FTS_CRLDIR), keeping its entries', async () => {
    const fts = path.join(pki.dir, 'FTS_CRL.json');
    fs.writeFileSync(fts, opensslCrl(pki, ['abcdef']));
    const saved = { ...process.env };
    try {
      process.env.FTS_CRLDIR = fts;
      await cli(['revoke', pki.clients.charlie!.cert, '--certs-dir', pki.dir]);
    } finally {
      process.env = saved;
    }
    const text = fs.readFileSync(fts, 'utf8');
    assert.match(text, /^-----BEGIN X509 CRL-----/);
    const d = parseRevocationFile(Buffer.from(text));
    assert.deepEqual([...d.entries.keys()].sort(), ['abcdef', pki.clients.charlie!.serial].sort());
    assert.match(opensslStatus(['crl', '-in', fts, '-noout', '-CAfile', pki.paths.ca, '-verify']).output, /verify OK/);
  });

  it('--redis that cannot be reached: the list is written, the command fails saying why, the password not shown', async () => {
    const file = path.join(pki.dir, 'unsent.json');
    const err = await cli(['revoke', 'abc9', '--certs-dir', pki.dir, '--crl', file, '--redis', 'redis://:s3cret@127.0.0.1:1']).then(() => '', (e: Error) => e.message);
    assert.match(err, /the list is written, but not sent to redis:\/\/\[redacted\]@127\.0\.0\.1:1: connect ECONNREFUSED/);
    assert.doesNotMatch(err, /s3cret/);
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).revoked.map((r: { serial_number: string }) => r.serial_number), ['abc9']);
    // only a signed list is shared: without the CA key there is nothing to send
    const err2 = await cli(['crl', 'refresh', '--certs-dir', pki.dir, '--crl', file, '--ca-key', path.join(pki.dir, 'nope.key'), '--redis', 'redis://127.0.0.1:1']).then(() => '', (e: Error) => e.message);
    assert.match(err2, /nothing sent to redis:\/\/127\.0\.0\.1:1: only a CA-signed list is shared/);
  });

  it('without a Redis URL, Redis TLS files in the environment (shared with the nodes) are not looked at', async () => {
    const file = path.join(pki.dir, 'shared-env.json');
    process.env.COTSTREAM_REDIS_CA = '/nonexistent/redis-ca.pem';
    try {
      await cli(['revoke', 'abc7', '--certs-dir', pki.dir, '--crl', file]);
    } finally {
      delete process.env.COTSTREAM_REDIS_CA;
    }
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).revoked.map((r: { serial_number: string }) => r.serial_number), ['abc7']);
  });

  it('--redis that is no redis:// URL is refused before anything is written (ioredis took it for a socket path and printed it, password and all)', async () => {
    for (const url of ['http://:CLI5secret@127.0.0.1:1', 'redis//:CLI5secret@127.0.0.1:1']) {
      const file = path.join(pki.dir, 'mistyped.json');
      const err = await cli(['revoke', 'abc8', '--certs-dir', pki.dir, '--crl', file, '--redis', url]).then(() => '', (e: Error) => e.message);
      assert.match(err, /--redis: expected a redis:\/\/ or rediss:\/\/ URL/);
      assert.doesNotMatch(err, /CLI5secret/);
      assert.equal(fs.existsSync(file), false);
    }
  });

  it('crl refresh renews an expired next_update without changing the entries', async () => {
    const file = path.join(pki.dir, 'old.json');
    fs.writeFileSync(file, JSON.stringify({ next_update: '2020-01-01T00:00:00Z', revoked: [{ serial_number: 'abc', reason: 'superseded' }] }));
    assert.match(await cli(['crl', 'list', '--certs-dir', pki.dir, '--crl', file]), /PASSED/);
    await cli(['crl', 'refresh', '--certs-dir', pki.dir, '--crl', file, '--crl-days', '10']);
    const j = JSON.parse(fs.readFileSync(file, 'utf8'));
    const days = (Date.parse(j.next_update) - Date.now()) / 86400_000;
    assert.ok(days > 9.9 && days <= 10);
    assert.deepEqual(j.revoked.map((r: { serial_number: string }) => r.serial_number), ['abc']);
  });

  it('--help documents every option with its default', async () => {
    for (const args of [['revoke'], ['crl', 'list'], ['crl', 'refresh']]) {
      let help = '';
      const program = new Command('cotstream').exitOverride().configureOutput({ writeOut: (s) => (help += s), writeErr: (s) => (help += s) });
      registerRevocationCommands(program);
      await assert.rejects(program.parseAsync([...args, '--help'], { from: 'user' }), (e: CommanderError) => e.code === 'commander.helpDisplayed');
      const entries = help.split('Options:')[1]!.split(/\n(?=\s+-)/).filter((e) => /--[a-z]/.test(e));
      assert.ok(entries.some((e) => e.includes('--crl <file>')), `${args} has --crl`);
      for (const e of entries) {
        const flag = /--[a-z-]+/.exec(e)![0];
        if (flag === '--help') continue;
        assert.match(e.replace(/\s+/g, ' '), /default/, `${args.join(' ')} ${flag} documents its default`);
      }
    }
  });
});
