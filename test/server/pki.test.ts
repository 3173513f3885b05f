import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { once } from 'node:events';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { Command, CommanderError } from 'commander';
import { unzipSync, strFromU8 } from 'fflate';
import { assertKeyPrivate, certificateExpiry, initPki, issueClient, pkiPaths, registerCertsCommands } from '../../src/pki/index.ts';
import { canonicalSerial } from '../../src/auth/serial.ts';
import { makePki, openssl, opensslStatus, type TestPki } from '../helpers/pki.ts';
import { runCommands } from '../helpers/cli.ts';
import { registerRevocationCommands } from '../../src/auth/revocation-commands.ts';
import { tempDir } from '../helpers/tmp.ts';
import { writeFileAtomic } from '../../src/pki/files.ts';
import forge from 'node-forge';

const DAY = 86400_000;
const mode = (f: string) => fs.statSync(f).mode & 0o777;
const tmpDir = () => tempDir('pki');

/** A commander program with the certs commands, capturing what they print; errors throw. */
function cli(args: string[]): Promise<string> {
  return runCommands(registerCertsCommands, args);
}

describe('PKI (node-forge)', function () {
  let pki: TestPki;
  before(async () => {
    pki = await makePki(['alpha'], ['localhost', '127.0.0.1', 'tak.example.org', '10.1.2.3']);
  });
  after(() => pki.cleanup());

  it('writes the CA, server cert and keys with private keys 0600', () => {
    const p = pki.paths;
    assert.deepEqual(p, pkiPaths(pki.dir));
    for (const f of [p.caKey, p.key, pki.clients.alpha!.key, pki.clients.alpha!.p12]) assert.equal(mode(f), 0o600, f);
    for (const f of [p.ca, p.cert, pki.clients.alpha!.cert]) assert.equal(mode(f), 0o644, f);
  });

  it('CA: basicConstraints CA:TRUE critical, keyUsage keyCertSign + cRLSign, 10 years', () => {
    const text = openssl(['x509', '-in', pki.paths.ca, '-noout', '-text']);
    assert.match(text, /X509v3 Basic Constraints: critical\s+CA:TRUE/);
    assert.match(text, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    const c = new X509Certificate(fs.readFileSync(pki.paths.ca));
    assert.ok(c.ca);
    const days = (new Date(c.validTo).getTime() - Date.now()) / DAY;
    assert.ok(days > 3649 && days <= 3650, `CA validity ${days} days`);
  });

  it('server: SAN with every host, serverAuth, 1 year, signed by the CA', () => {
    const text = openssl(['x509', '-in', pki.paths.cert, '-noout', '-ext', 'subjectAltName,extendedKeyUsage,basicConstraints']);
    assert.match(text, /DNS:localhost, IP Address:127\.0\.0\.1, DNS:tak\.example\.org, IP Address:10\.1\.2\.3/);
    assert.match(text, /TLS Web Server Authentication/);
    assert.match(text, /CA:FALSE/);
    assert.match(openssl(['verify', '-CAfile', pki.paths.ca, pki.paths.cert]), /: OK/);
    const c = new X509Certificate(fs.readFileSync(pki.paths.cert));
    const days = (new Date(c.validTo).getTime() - Date.now()) / DAY;
    assert.ok(days > 364 && days <= 365, `server validity ${days} days`);
    assert.equal(c.checkHost('tak.example.org'), 'tak.example.org');
    assert.equal(c.checkIP('10.1.2.3'), '10.1.2.3');
  });

  it('client: clientAuth, CA-signed, serial = canonical hex of the certificate serial', () => {
    const a = pki.clients.alpha!;
    const text = openssl(['x509', '-in', a.cert, '-noout', '-ext', 'extendedKeyUsage,subjectAltName', '-serial', '-subject']);
    assert.match(text, /TLS Web Client Authentication/);
    assert.match(text, /URI:urn:cotstream:client:alpha/);
    assert.match(text, /subject=CN ?= ?alpha/);
    const opensslSerial = /serial=([0-9A-F]+)/.exec(text)![1]!;
    assert.equal(a.serial, canonicalSerial(opensslSerial));
    assert.match(openssl(['verify', '-CAfile', pki.paths.ca, a.cert]), /: OK/);
  });

  it('serials are random, positive and at most 128 bits', () => {
    const serials = new Set<string>();
    for (const f of [pki.paths.ca, pki.paths.cert, pki.clients.alpha!.cert]) {
      // the serial as encoded on the wire: first INTEGER directly inside tbsCertificate (depth 2)
      const m = /d=2\s+hl=\d+\s+l=\s*(\d+)\s+prim:\s+INTEGER\s+:(-?[0-9A-F]+)/.exec(openssl(['asn1parse', '-in', f]));
      assert.ok(m, f);
      assert.ok(!m[2]!.startsWith('-'), `negative serial ${m[2]}`);
      assert.ok(Number(m[1]) <= 17, `serial of ${m[1]} octets`); // 16 random octets + a sign octet at most
      const serial = canonicalSerial(m[2]!);
      assert.ok(serial.length >= 24 && serial.length <= 32, serial);
      serials.add(serial);
    }
    assert.equal(serials.size, 3);
  });

  it('PKCS#12 opens with its password (openssl), holds key + cert + CA, refuses a wrong password', () => {
    const a = pki.clients.alpha!;
    assert.match(a.password, /^[A-Za-z0-9]{20}$/);
    const out = openssl(['pkcs12', '-in', a.p12, '-passin', `pass:${a.password}`, '-nodes']);
    assert.match(out, /BEGIN PRIVATE KEY/);
    assert.equal((out.match(/BEGIN CERTIFICATE/g) ?? []).length, 2);
    assert.match(out, /subject=CN ?= ?alpha/);
    assert.notEqual(opensslStatus(['pkcs12', '-in', a.p12, '-passin', 'pass:wrong-password', '-noout']).code, 0);
  });

  it('a client certificate completes mutual TLS against the server certificate (real sockets)', async () => {
    const p = pki.paths;
    const server = tls.createServer({
      key: fs.readFileSync(p.key),
      cert: fs.readFileSync(p.cert),
      ca: fs.readFileSync(p.ca),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    });
    const peer = new Promise<tls.PeerCertificate>((resolve) =>
      server.on('secureConnection', (s) => {
        resolve(s.getPeerCertificate());
        s.end();
      }),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const a = pki.clients.alpha!;
      const sock = tls.connect({
        port: (server.address() as { port: number }).port,
        host: '127.0.0.1',
        servername: 'localhost',
        pfx: fs.readFileSync(a.p12),
        passphrase: a.password,
        ca: fs.readFileSync(p.ca), // verifies the server certificate + its SAN for localhost
      });
      await once(sock, 'secureConnect');
      const cert = await peer;
      assert.equal(cert.subject.CN, 'alpha');
      assert.equal(canonicalSerial(cert.serialNumber), a.serial);
      sock.destroy();
    } finally {
      server.close();
    }
  });

  it('never overwrites without force; force rewrites with exact modes', async () => {
    await assert.rejects(initPki({ certsDir: pki.dir }), (e: Error) => e.message.includes(pki.paths.ca) && e.message.includes('--force'));
    await assert.rejects(issueClient({ certsDir: pki.dir, name: 'alpha' }), /refusing to overwrite.*alpha\.pem/);

    const dir = tmpDir();
    try {
      const p = await initPki({ certsDir: dir, hosts: ['localhost'] });
      const before = fs.readFileSync(p.ca, 'utf8');
      fs.chmodSync(p.key, 0o644); // someone loosened it; --force must not keep that
      await initPki({ certsDir: dir, hosts: ['localhost'], force: true, bits: 2048 });
      assert.notEqual(fs.readFileSync(p.ca, 'utf8'), before);
      assert.equal(mode(p.key), 0o600);
      assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('directories made on the way are never writable by others, whatever the umask', () => {
    const dir = tmpDir();
    const old = process.umask(0);
    try {
      writeFileAtomic(path.join(dir, 'new', 'sub', 'server.key'), 'x', 0o600);
      for (const d of ['new', 'new/sub']) assert.equal(mode(path.join(dir, d)), 0o755, d);
      assert.equal(mode(path.join(dir, 'new', 'sub', 'server.key')), 0o600);
    } finally {
      process.umask(old);
    }
  });

  it('rejects bad names, bad hosts and small keys before writing anything', async () => {
    await assert.rejects(issueClient({ certsDir: pki.dir, name: '../evil' }), /client name/);
    await assert.rejects(issueClient({ certsDir: pki.dir, name: 'x', password: '123' }), /at least 6/);
    const dir = tmpDir();
    try {
      await assert.rejects(initPki({ certsDir: dir, hosts: ['bad host!'] }), /not a host name/);
      await assert.rejects(initPki({ certsDir: dir, bits: 1024 }), /--bits/);
      await assert.rejects(issueClient({ certsDir: dir, name: 'x' }), /no CA/);
      assert.deepEqual(fs.readdirSync(dir), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('assertKeyPrivate refuses a world-readable key, naming the file', () => {
    const dir = tmpDir();
    try {
      const f = path.join(dir, 'server.key');
      fs.writeFileSync(f, 'x', { mode: 0o600 });
      assertKeyPrivate(f);
      fs.chmodSync(f, 0o640); // group access is the operator's choice (ssl-cert group)
      assertKeyPrivate(f);
      fs.chmodSync(f, 0o644);
      assert.throws(() => assertKeyPrivate(f), (e: Error) => e.message.includes(f) && /chmod 600/.test(e.message) && /644/.test(e.message));
      assert.throws(() => assertKeyPrivate(path.join(dir, 'missing.key')), /missing\.key/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('certificateExpiry gives notAfter', () => {
    const exp = certificateExpiry(pki.paths.cert);
    const c = new X509Certificate(fs.readFileSync(pki.paths.cert));
    assert.equal(exp.getTime(), new Date(c.validTo).getTime());
    assert.ok(Math.abs(exp.getTime() - (Date.now() + 365 * DAY)) < 2 * DAY);
  });
});

describe('ATAK data package', function () {
  let pki: TestPki;
  before(async () => {
    pki = await makePki([]);
  });
  after(() => pki.cleanup());

  it('unzips to manifest + pref + client PKCS#12 + CA-only truststore', async () => {
    const r = await pki.client('delta', { package: true, host: 'tak.example.org' });
    assert.ok(r.package && r.truststore && r.truststorePassword);
    assert.equal(mode(r.package), 0o600);
    assert.equal(r.truststorePassword, r.password); // one password per device; the truststore holds only public data
    const files = unzipSync(fs.readFileSync(r.package));
    assert.deepEqual(Object.keys(files).sort(), ['MANIFEST/manifest.xml', 'certs/cotstream.pref', 'certs/delta.p12', 'certs/truststore-delta.p12']);

    const manifest = strFromU8(files['MANIFEST/manifest.xml']!);
    assert.match(manifest, /<MissionPackageManifest version="2">/);
    assert.match(manifest, /<Parameter name="uid" value="[0-9a-f-]{36}"\/>/);
    assert.match(manifest, /<Parameter name="name" value="delta.zip"\/>/);
    assert.match(manifest, /<Parameter name="onReceiveDelete" value="true"\/>/);
    for (const e of ['certs/cotstream.pref', 'certs/delta.p12', 'certs/truststore-delta.p12']) assert.ok(manifest.includes(`zipEntry="${e}"`), e);

    const pref = strFromU8(files['certs/cotstream.pref']!);
    const entry = (k: string) => new RegExp(`<entry key="${k}" class="[^"]+">([^<]*)</entry>`).exec(pref)?.[1];
    assert.equal(entry('connectString0'), 'tak.example.org:8089:ssl');
    assert.equal(entry('enabled0'), 'true');
    assert.equal(entry('count'), '1');
    assert.ok(entry('description0'));
    assert.equal(entry('caLocation'), 'cert/truststore-delta.p12');
    assert.equal(entry('certificateLocation'), 'cert/delta.p12');
    assert.equal(entry('caPassword'), r.truststorePassword);
    assert.equal(entry('clientPassword'), r.password);

    // the zipped files are byte-identical to the ones written beside it
    assert.deepEqual(Buffer.from(files['certs/delta.p12']!), fs.readFileSync(r.p12));
    assert.deepEqual(Buffer.from(files['certs/truststore-delta.p12']!), fs.readFileSync(r.truststore));

    // truststore: opens with its password, holds exactly the CA certificate and no key
    const ts = openssl(['pkcs12', '-in', r.truststore, '-passin', `pass:${r.truststorePassword}`, '-nodes']);
    assert.doesNotMatch(ts, /PRIVATE KEY/);
    assert.equal((ts.match(/BEGIN CERTIFICATE/g) ?? []).length, 1);
    const inStore = new X509Certificate(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/.exec(ts)![0]);
    assert.equal(inStore.fingerprint256, new X509Certificate(fs.readFileSync(pki.paths.ca)).fingerprint256);
    const info = openssl(['pkcs12', '-in', r.truststore, '-passin', `pass:${r.truststorePassword}`, '-info', '-noout']);
    assert.doesNotMatch(info, /Keybag/i);
    // marked as a trusted CA for every keystore: an alias (BouncyCastle/Android) and Oracle's
    // trusted-key-usage attribute (Java's PKCS12 keystore lists nothing without it)
    const bag = openssl(['pkcs12', '-in', r.truststore, '-passin', `pass:${r.truststorePassword}`, '-info', '-nokeys']);
    assert.match(bag, /friendlyName: cotstream-ca/);
    assert.match(bag, /2\.16\.840\.1\.113894\.746875\.1\.1/);
    assert.doesNotMatch(bag, /localKeyID/);
    assert.notEqual(opensslStatus(['pkcs12', '-in', r.truststore, '-passin', 'pass:wrong-password', '-noout']).code, 0, 'the MAC checks the password');
    if (spawnSync('keytool', ['-help']).status === 0) {
      // where a JDK is installed, ask Java itself
      const kt = spawnSync('keytool', ['-list', '-storetype', 'PKCS12', '-keystore', r.truststore, '-storepass', r.truststorePassword!], { encoding: 'utf8' });
      assert.match(kt.stdout, /contains 1 entry/);
      assert.match(kt.stdout, /cotstream-ca, .*trustedCertEntry/);
    }

    // client PKCS#12 opens and holds the client key
    const cl = openssl(['pkcs12', '-in', r.p12, '-passin', `pass:${r.password}`, '-nodes']);
    assert.match(cl, /BEGIN PRIVATE KEY/);
  });

  it('the package uses a given password for both stores and defaults --host to a reachable address', async () => {
    const r = await pki.client('echo', { package: true });
    const pref = strFromU8(unzipSync(fs.readFileSync(r.package!))['certs/cotstream.pref']!);
    assert.match(pref, /<entry key="connectString0" class="class java.lang.String">[^<:]+:8089:ssl<\/entry>/);
    const r2 = await issueClient({ certsDir: pki.dir, name: 'foxtrot', password: 'given-pass', package: true, port: 18089 });
    assert.equal(r2.password, 'given-pass');
    assert.equal(r2.truststorePassword, 'given-pass');
    assert.match(strFromU8(unzipSync(fs.readFileSync(r2.package!))['certs/cotstream.pref']!), /:18089:ssl</);
  });
});

describe('certs commands', function () {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it('certs init / client / show, with --help documenting every option and default', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const out = await cli(['certs', 'init', '--certs-dir', dir, '--host', 'a.example,10.0.0.1', '--host', 'b.example', '--days', '30', '--ca-name', 'Test CA']);
    assert.match(out, /created in/);
    const san = openssl(['x509', '-in', path.join(dir, 'server.pem'), '-noout', '-ext', 'subjectAltName', '-issuer']);
    assert.match(san, /DNS:a\.example, IP Address:10\.0\.0\.1, DNS:b\.example/);
    assert.match(san, /CN ?= ?Test CA/);
    const days = (certificateExpiry(path.join(dir, 'server.pem')).getTime() - Date.now()) / DAY;
    assert.ok(days > 29 && days <= 30);

    const c = await cli(['certs', 'client', 'golf', '--certs-dir', dir, '--package', '--host', 'h.example']);
    const pw = /PKCS#12 password \(client and truststore\): (\S+)/.exec(c)![1]!;
    const tpw = pw;
    openssl(['pkcs12', '-in', path.join(dir, 'clients', 'golf.p12'), '-passin', `pass:${pw}`, '-noout']);
    openssl(['pkcs12', '-in', path.join(dir, 'clients', 'golf-truststore.p12'), '-passin', `pass:${tpw}`, '-noout']);
    assert.match(c, /golf\.zip/);

    const given = await cli(['certs', 'client', 'hotel', '--certs-dir', dir, '--password', 'secret-given', '--out', path.join(dir, 'elsewhere')]);
    assert.doesNotMatch(given, /secret-given/); // a password the operator chose is not echoed
    assert.ok(fs.existsSync(path.join(dir, 'elsewhere', 'hotel.p12')));

    const show = await cli(['certs', 'show', '--certs-dir', dir]);
    assert.match(show, /ca\.pem\s+CN=Test CA/);
    assert.match(show, /clients\/golf\.pem\s+CN=golf/);

    await assert.rejects(cli(['certs', 'init', '--certs-dir', dir]), /refusing to overwrite.*ca\.pem.*--force/s);
    await assert.rejects(cli(['certs', 'init', '--certs-dir', dir, '--bits', 'lots']), /--bits expects a whole number/);

    for (const sub of ['init', 'server', 'client', 'show']) {
      let help = '';
      const program = new Command('cotstream').exitOverride().configureOutput({ writeOut: (s) => (help += s), writeErr: (s) => (help += s) });
      registerCertsCommands(program);
      await assert.rejects(program.parseAsync(['certs', sub, '--help'], { from: 'user' }), (e: CommanderError) => e.code === 'commander.helpDisplayed');
      assert.match(help, /--certs-dir <dir>.*COTSTREAM_CERTS_DIR.*FTS_CERTS_PATH.*default: \.\/certs/s, sub);
      // one entry per option, continuation lines folded in
      const entries = help.split('Options:')[1]!.split(/\n(?=\s+-)/).filter((e) => /--[a-z]/.test(e));
      for (const e of entries) {
        const flag = /--[a-z-]+/.exec(e)![0];
        if (['--help', '--force', '--package'].includes(flag)) continue;
        assert.match(e.replace(/\s+/g, ' '), /default/, `${sub} ${flag} documents its default`);
      }
    }
  });

  it('a default `certs init` covers the address a default data package points at (iOS/iTAK check the SAN)', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    await cli(['certs', 'init', '--certs-dir', dir]);
    const c = await cli(['certs', 'client', 'india', '--certs-dir', dir, '--package']);
    assert.match(c, /india\.zip/);
    // the operator is told which address the package dials (a guess when --host is not given)
    const said = /data package connects to (\S+):8089 \(ssl\): this machine's first non-loopback address/.exec(c)?.[1];
    const zip = unzipSync(fs.readFileSync(path.join(dir, 'clients', 'india.zip')));
    const pref = strFromU8(zip['certs/cotstream.pref']!);
    const host = /connectString0"[^>]*>([^<]+):8089:ssl</.exec(pref)![1]!;
    assert.equal(said, host);
    const cert = new X509Certificate(fs.readFileSync(path.join(dir, 'server.pem')));
    assert.equal(cert.checkHost(host) ?? cert.checkIP(host), host, `server certificate (${cert.subjectAltName}) must be valid for ${host}`);
  });

  it('a CA outside the certs dir (COTSTREAM_CA / FTS_CADIR, as `start` reads it) is the one `certs client` and `revoke` sign with', async () => {
    // the operator's CA lives in its own directory; the certs dir also holds another (a dev PKI)
    const dir = tmpDir();
    const ext = tmpDir();
    dirs.push(dir, ext);
    await cli(['certs', 'init', '--certs-dir', dir, '--host', 'localhost', '--ca-name', 'Dev CA']);
    await cli(['certs', 'init', '--certs-dir', ext, '--host', 'localhost', '--ca-name', 'Real CA']);
    const real = new X509Certificate(fs.readFileSync(path.join(ext, 'ca.pem')));
    const saved = { ...process.env };
    const revokeCli = (args: string[]) => runCommands(registerRevocationCommands, args);
    try {
      for (const k of ['COTSTREAM_CERTS_DIR', 'FTS_CERTS_PATH', 'COTSTREAM_CRL', 'FTS_CRLDIR', 'COTSTREAM_CA_KEY']) delete process.env[k];
      process.env.COTSTREAM_CA = path.join(ext, 'ca.pem');
      process.env.FTS_CAKEYDIR = path.join(ext, 'ca.key');
      await cli(['certs', 'client', 'kilo', '--certs-dir', dir]);
      const kilo = new X509Certificate(fs.readFileSync(path.join(dir, 'clients', 'kilo.pem')));
      assert.ok(kilo.checkIssued(real), `kilo was issued by ${kilo.issuer.replace(/\n/g, ', ')}, not the CA the server trusts`);
      assert.match(await cli(['certs', 'show', '--certs-dir', dir]), new RegExp(`${path.join(ext, 'ca.pem')}\\s+CN=Real CA`));

      // the signed crl.pem verifies against that CA
      await revokeCli(['revoke', path.join(dir, 'clients', 'kilo.pem'), '--certs-dir', dir]);
      const v = opensslStatus(['crl', '-in', path.join(dir, 'crl.pem'), '-CAfile', path.join(ext, 'ca.pem'), '-noout']);
      assert.match(v.output, /verify OK/);
      // certs show says which certificates the server will refuse
      const show = await cli(['certs', 'show', '--certs-dir', dir]);
      assert.match(show, /clients\/kilo\.pem .*REVOKED \(unspecified\)/);
      assert.match(show, /server\.pem .* valid\n/);

      // flags beat the variables; a CA key that is not the CA's is refused before anything is issued
      await assert.rejects(cli(['certs', 'client', 'lima', '--certs-dir', dir, '--ca-key', path.join(dir, 'ca.key')]), /does not belong to the CA certificate/);
      assert.ok(!fs.existsSync(path.join(dir, 'clients', 'lima.pem')));
      await cli(['certs', 'client', 'mike', '--certs-dir', dir, '--ca', path.join(dir, 'ca.pem'), '--ca-key', path.join(dir, 'ca.key')]);
      assert.match(new X509Certificate(fs.readFileSync(path.join(dir, 'clients', 'mike.pem'))).issuer, /Dev CA/);
    } finally {
      process.env = saved;
    }
  });

  it('certs server renews the server certificate from the same CA: enrolled clients stay valid, the old pair is kept', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    await cli(['certs', 'init', '--certs-dir', dir, '--host', 'localhost']);
    await cli(['certs', 'client', 'november', '--certs-dir', dir]);
    const caBefore = fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8');
    const old = new X509Certificate(fs.readFileSync(path.join(dir, 'server.pem')));
    await assert.rejects(cli(['certs', 'server', '--certs-dir', dir, '--host', 'tak.example.org']), /refusing to overwrite.*server\.pem.*--force/s);
    const out = await cli(['certs', 'server', '--certs-dir', dir, '--host', 'tak.example.org,10.9.8.7', '--days', '400', '--force']);
    assert.match(out, /valid for tak\.example\.org, 10\.9\.8\.7 until .*SIGHUP/s);
    const renewed = new X509Certificate(fs.readFileSync(path.join(dir, 'server.pem')));
    assert.notEqual(renewed.serialNumber, old.serialNumber);
    assert.equal(fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8'), caBefore, 'the CA is untouched');
    const ca = new X509Certificate(caBefore);
    assert.ok(renewed.checkIssued(ca) && renewed.verify(ca.publicKey));
    assert.equal(renewed.checkHost('tak.example.org'), 'tak.example.org');
    assert.equal(renewed.checkIP('10.9.8.7'), '10.9.8.7');
    assert.ok((Date.parse(renewed.validTo) - Date.now()) / DAY > 399);
    assert.ok(renewed.checkPrivateKey(createPrivateKey(fs.readFileSync(path.join(dir, 'server.key')))), 'the new key goes with the new certificate');
    assert.equal(mode(path.join(dir, 'server.key')), 0o600);
    assert.equal(mode(path.join(dir, 'server.key.old')), 0o600);
    assert.equal(new X509Certificate(fs.readFileSync(path.join(dir, 'server.pem.old'))).serialNumber, old.serialNumber);
    // an enrolled client still verifies: same CA, nothing to re-import on the phones
    const november = new X509Certificate(fs.readFileSync(path.join(dir, 'clients', 'november.pem')));
    assert.ok(november.checkIssued(ca) && november.verify(ca.publicKey));
  });

  it('--certs-dir falls back to COTSTREAM_CERTS_DIR, then FTS_CERTS_PATH', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    const saved = { ...process.env };
    try {
      delete process.env.COTSTREAM_CERTS_DIR;
      process.env.FTS_CERTS_PATH = dir;
      await cli(['certs', 'init', '--host', 'localhost']);
      assert.ok(fs.existsSync(path.join(dir, 'ca.pem')));
      const other = tmpDir();
      dirs.push(other);
      process.env.COTSTREAM_CERTS_DIR = other;
      await cli(['certs', 'init', '--host', 'localhost']);
      assert.ok(fs.existsSync(path.join(other, 'ca.pem')));
    } finally {
      process.env = saved;
    }
  });
});

describe('certs: what devices will dial and accept', function () {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const fresh = async (host: string): Promise<string> => {
    const dir = tmpDir();
    dirs.push(dir);
    await cli(['certs', 'init', '--certs-dir', dir, '--host', host]);
    return dir;
  };
  const prefOf = (zip: string, entry = 'certs/cotstream.pref') => strFromU8(unzipSync(fs.readFileSync(zip))[entry]!);
  const connectOf = (pref: string) => /connectString0"[^>]*>([^<]+)</.exec(pref)![1]!;

  it('certs server --force without --host keeps the names of the certificate it replaces', async () => {
    const dir = await fresh('tak.example.org');
    const out = await cli(['certs', 'server', '--certs-dir', dir, '--force']);
    assert.match(out, /valid for tak\.example\.org \(the names of the certificate it replaces/);
    assert.equal(new X509Certificate(fs.readFileSync(path.join(dir, 'server.pem'))).subjectAltName, 'DNS:tak.example.org');
  });

  it('a package dials a name the server certificate holds, and warns when --host is not one of them', async () => {
    const dir = await fresh('tak.example.org');
    const out = await cli(['certs', 'client', 'oscar', '--certs-dir', dir, '--package']);
    assert.match(out, /data package connects to tak\.example\.org:8089 \(ssl\): the server certificate's name/);
    assert.doesNotMatch(out, /warning/);
    assert.equal(connectOf(prefOf(path.join(dir, 'clients', 'oscar.zip'))), 'tak.example.org:8089:ssl');
    const warned = await cli(['certs', 'client', 'papa', '--certs-dir', dir, '--package', '--host', '10.9.9.9']);
    assert.match(warned, /warning: the server certificate .*server\.pem is not valid for 10\.9\.9\.9 \(it names tak\.example\.org\).*certs server --force --host tak\.example\.org,10\.9\.9\.9/s);
    // a wildcard certificate covers one label
    const wild = await fresh('*.example.org');
    assert.doesNotMatch(await cli(['certs', 'client', 'quebec', '--certs-dir', wild, '--package', '--host', 'tak.example.org']), /warning/);
    assert.match(await cli(['certs', 'client', 'romeo', '--certs-dir', wild, '--package', '--host', 'a.b.example.org']), /warning: .*not valid for a\.b\.example\.org/);
  });

  it('refuses a package --host ATAK would misread (port, scheme, IPv6, empty) before writing anything', async () => {
    const dir = await fresh('localhost');
    for (const bad of ['tak.example.org:8089', 'https://tak.example.org', 'fe80::1', '', 'bad host']) {
      await assert.rejects(cli(['certs', 'client', 'sierra', '--certs-dir', dir, '--package', '--host', bad]), /--host/, bad);
      assert.ok(!fs.existsSync(path.join(dir, 'clients', 'sierra.pem')), bad);
    }
    await assert.rejects(cli(['certs', 'client', 'sierra', '--certs-dir', dir, '--package', '--host', 'fe80::1']), /cannot hold an IPv6 address/);
  });

  it('writes an iTAK package: the same files at the top of the zip', async () => {
    const dir = await fresh('tak.example.org');
    const out = await cli(['certs', 'client', 'tango', '--certs-dir', dir, '--package', '--password', 'tango-pass']);
    const itak = path.join(dir, 'clients', 'tango-itak.zip');
    assert.match(out, /tango-itak\.zip\s+<- or this one in iTAK/);
    assert.equal(mode(itak), 0o600);
    const files = unzipSync(fs.readFileSync(itak));
    assert.deepEqual(Object.keys(files).sort(), ['MANIFEST/manifest.xml', 'cotstream.pref', 'tango.p12', 'truststore-tango.p12']);
    const manifest = strFromU8(files['MANIFEST/manifest.xml']!);
    assert.match(manifest, /<Parameter name="name" value="tango-itak\.zip"\/>/);
    for (const e of ['cotstream.pref', 'tango.p12', 'truststore-tango.p12']) assert.ok(manifest.includes(`zipEntry="${e}"`), e);
    const pref = strFromU8(files['cotstream.pref']!);
    assert.equal(connectOf(pref), 'tak.example.org:8089:ssl');
    assert.match(pref, /key="caLocation"[^>]*>cert\/truststore-tango\.p12</);
    assert.match(pref, /key="certificateLocation"[^>]*>cert\/tango\.p12</);
    assert.deepEqual(Buffer.from(files['tango.p12']!), fs.readFileSync(path.join(dir, 'clients', 'tango.p12')));
    // the ATAK package's pref differs only in where its files are
    assert.equal(prefOf(path.join(dir, 'clients', 'tango.zip')), pref);
  });

  it('a CA made elsewhere, with a key identifier of its own choosing, chains to what it signs', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    // (a config file: with -addext, openssl would compute the CA's own AKI from its key, not its SKI)
    fs.writeFileSync(path.join(dir, 'ca.cnf'), [
      '[req]', 'distinguished_name = dn', 'x509_extensions = v3', 'prompt = no', '[dn]', 'CN = Other CA', '[v3]',
      'subjectKeyIdentifier = 01:02:03:04:05:06:07:08', 'authorityKeyIdentifier = keyid:always',
      'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign', '',
    ].join('\n'));
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.pem'), '-days', '30', '-config', path.join(dir, 'ca.cnf')]);
    fs.chmodSync(path.join(dir, 'ca.key'), 0o600);
    await cli(['certs', 'server', '--certs-dir', dir, '--host', 'localhost']);
    await cli(['certs', 'client', 'uniform', '--certs-dir', dir]);
    const ca = new X509Certificate(fs.readFileSync(path.join(dir, 'ca.pem')));
    for (const f of [path.join(dir, 'server.pem'), path.join(dir, 'clients', 'uniform.pem')]) {
      assert.match(openssl(['verify', '-CAfile', path.join(dir, 'ca.pem'), f]), /: OK/, f);
      assert.ok(new X509Certificate(fs.readFileSync(f)).checkIssued(ca), f);
      assert.match(openssl(['x509', '-in', f, '-noout', '-ext', 'authorityKeyIdentifier']), /01:02:03:04:05:06:07:08/);
    }
  });

  it('refuses to sign with a CA key others can read; revoke still revokes, with a warning', async () => {
    const dir = await fresh('localhost');
    await cli(['certs', 'client', 'victor', '--certs-dir', dir]);
    fs.chmodSync(path.join(dir, 'ca.key'), 0o644);
    await assert.rejects(cli(['certs', 'client', 'whiskey', '--certs-dir', dir]), /ca\.key is accessible by other users \(mode 644\).*chmod 600/s);
    await assert.rejects(cli(['certs', 'server', '--certs-dir', dir, '--force']), /ca\.key is accessible by other users/);
    assert.ok(!fs.existsSync(path.join(dir, 'clients', 'whiskey.pem')));
    const out = await runCommands(registerRevocationCommands, ['revoke', path.join(dir, 'clients', 'victor.pem'), '--certs-dir', dir]);
    assert.match(out, /warning: other users can read the CA key .*ca\.key: anyone who does can issue certificates your server accepts \(fix: chmod 600 .*ca\.key\)/);
    assert.match(fs.readFileSync(path.join(dir, 'crl.json'), 'utf8'), new RegExp(canonicalSerial(new X509Certificate(fs.readFileSync(path.join(dir, 'clients', 'victor.pem'))).serialNumber)));
  });

  it('a server certificate with only a CN (made by hand): renewal keeps that name, and packages dial it', async () => {
    const dir = await fresh('localhost');
    openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'server.key'), '-subj', '/CN=cn-only.example.org', '-out', path.join(dir, 'server.csr')]);
    openssl(['x509', '-req', '-in', path.join(dir, 'server.csr'), '-CA', path.join(dir, 'ca.pem'), '-CAkey', path.join(dir, 'ca.key'), '-days', '100', '-out', path.join(dir, 'server.pem')]);
    const pkg = await cli(['certs', 'client', 'yankee', '--certs-dir', dir, '--package']);
    assert.match(pkg, /data package connects to cn-only\.example\.org:8089/);
    assert.doesNotMatch(pkg, /warning/);
    assert.match(await cli(['certs', 'server', '--certs-dir', dir, '--force']), /valid for cn-only\.example\.org \(the names of the certificate it replaces/);
    assert.equal(new X509Certificate(fs.readFileSync(path.join(dir, 'server.pem'))).subjectAltName, 'DNS:cn-only.example.org');
  });

  it('never issues past the CA\'s own end: cut to it, with a warning; no server certificate to check a package against is said', async () => {
    const dir = tmpDir();
    dirs.push(dir);
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.pem'), '-days', '30', '-subj', '/CN=Short CA']);
    fs.chmodSync(path.join(dir, 'ca.key'), 0o600);
    const caEnd = Date.parse(new X509Certificate(fs.readFileSync(path.join(dir, 'ca.pem'))).validTo);
    const client = await cli(['certs', 'client', 'zulu', '--certs-dir', dir, '--package', '--host', 'tak.example.org']);
    assert.match(client, /warning: the CA expires on .*: the client certificate is valid until then/);
    assert.match(client, /warning: no readable server certificate at .*server\.pem to check the package's address tak\.example\.org against/);
    assert.ok(Date.parse(new X509Certificate(fs.readFileSync(path.join(dir, 'clients', 'zulu.pem'))).validTo) <= caEnd);
    assert.match(await cli(['certs', 'server', '--certs-dir', dir, '--host', 'localhost']), /warning: the CA expires on .*: the server certificate is valid until then/);
    assert.ok(Date.parse(new X509Certificate(fs.readFileSync(path.join(dir, 'server.pem'))).validTo) <= caEnd);
    // digits and dots that are no IPv4 address are not a host name either
    await assert.rejects(cli(['certs', 'server', '--certs-dir', dir, '--force', '--host', 'localhost,999.1.1.1']), /not a host name or IP address: "999\.1\.1\.1"/);
    await assert.rejects(cli(['certs', 'client', 'zulu2', '--certs-dir', dir, '--package', '--host', '1.2.3']), /--host "1\.2\.3"/);
  });

  it('refuses a password that is not printable ASCII; warns of a server certificate iOS would refuse', async () => {
    const dir = await fresh('localhost');
    await assert.rejects(cli(['certs', 'client', 'xray', '--certs-dir', dir, '--package', '--password', 'Pässwörd-1']), /--password \(or COTSTREAM_P12_PASSWORD\) must be printable ASCII/);
    assert.ok(!fs.existsSync(path.join(dir, 'clients', 'xray.pem')));
    assert.match(await cli(['certs', 'server', '--certs-dir', dir, '--force', '--days', '900']), /warning: the server certificate is valid for 900 days: iOS .* 825 days/);
    assert.doesNotMatch(await cli(['certs', 'server', '--certs-dir', dir, '--force', '--days', '825']), /warning/);
  });

  it('an empty COTSTREAM_P12_PASSWORD is no password: a random one is made and printed', async () => {
    const dir = await fresh('localhost');
    const saved = process.env.COTSTREAM_P12_PASSWORD;
    process.env.COTSTREAM_P12_PASSWORD = '';
    try {
      const out = await cli(['certs', 'client', 'yank', '--certs-dir', dir]);
      const pw = /PKCS#12 password[^:]*: (\S+)/.exec(out)?.[1];
      assert.ok(pw && pw.length >= 16, out);
      assert.ok(forge.pkcs12.pkcs12FromAsn1(forge.asn1.fromDer(fs.readFileSync(path.join(dir, 'clients', 'yank.p12')).toString('binary')), pw));
    } finally {
      if (saved === undefined) delete process.env.COTSTREAM_P12_PASSWORD; else process.env.COTSTREAM_P12_PASSWORD = saved;
    }
  });
});
