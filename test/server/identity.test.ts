// The handshake-time identity (CN, serial, fingerprint read from the session's DER) against Node's
// own X509Certificate, over real mutual-TLS connections with certificates made by openssl (not by
// our PKI code): odd subjects, odd serials, string types the fast reader leaves to Node.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { identityFromSocket, identityFromX509, remoteOf, type ClientIdentity } from '../../src/auth/identity.ts';
import { certFields, peerCertificateFromSession } from '../../src/auth/peer-der.ts';
import { makePki, openssl, type TestPki } from '../helpers/pki.ts';

interface Seen { fast: ClientIdentity; x509: ClientIdentity; session: Buffer; raw: Buffer }

interface Case {
  name: string;
  subj: string;
  serial: string;
  /** openssl req options (string mask, multi-valued RDNs) */
  req?: string[];
  /** the CN and serial Node prints, i.e. what both paths must give */
  cn: string;
  canonical: string;
  /** false: a string type the DER reader hands to Node (the fallback is exercised) */
  fast?: boolean;
}

const CASES: Case[] = [
  { name: 'plain', subj: '/CN=alpha/O=cotstream', serial: '0x7e47931aa371e167a6252f564e1e2dd0', cn: 'alpha', canonical: '7e47931aa371e167a6252f564e1e2dd0' },
  { name: 'UTF-8 CN', subj: '/CN=Ålesund Øst ✓ 東京', serial: '0x1234', req: ['-utf8'], cn: 'Ålesund Øst ✓ 東京', canonical: '1234' },
  { name: 'RFC 2253 specials', subj: '/CN=#a\\,b\\+c"d<e>;f\\\\g = h /O=x', serial: '0x05', cn: '#a,b+c"d<e>;f\\g = h ', canonical: '5' },
  { name: 'multi-valued RDN', subj: '/O=unit+CN=bravo/OU=ops', serial: '0x0a0b', req: ['-multivalue-rdn'], cn: 'bravo', canonical: 'a0b' },
  { name: 'two CNs', subj: '/CN=first/CN=second', serial: '0x77', cn: 'first', canonical: '77' },
  { name: 'no CN', subj: '/O=nobody/OU=ops', serial: '0x99', cn: '', canonical: '99' },
  // 0xff needs a leading zero byte in DER (else it would be negative)
  { name: 'serial with a sign byte', subj: '/CN=charlie', serial: '0xff', cn: 'charlie', canonical: 'ff' },
  { name: '20-byte serial', subj: '/CN=delta', serial: '0x7fffffffffffffffffffffffffffffffffffffff', cn: 'delta', canonical: '7fffffffffffffffffffffffffffffffffffffff' },
  { name: 'PrintableString CN', subj: '/CN=echo 1', serial: '0x10', req: ['-config', 'PRINTABLE'], cn: 'echo 1', canonical: '10' },
  { name: 'BMPString CN (left to Node)', subj: '/CN=Ωmega', serial: '0x11', req: ['-utf8', '-config', 'BMP'], cn: 'Ωmega', canonical: '11', fast: false },
];

describe('client identity from the TLS session (auth/identity, auth/peer-der)', function () {
  this.timeout(60_000);
  let pki: TestPki;
  let server: tls.Server;
  let port = 0;
  const seen: Seen[] = [];
  const certs = new Map<string, { key: string; cert: string }>();

  before(async () => {
    pki = await makePki([]);
    const cfg = (mask: string) => {
      const f = path.join(pki.dir, `req-${mask}.cnf`);
      fs.writeFileSync(f, `[req]\ndistinguished_name = dn\nstring_mask = ${mask}\n[dn]\n`);
      return f;
    };
    const masks: Record<string, string> = { PRINTABLE: cfg('default'), BMP: cfg('default') };
    for (const c of CASES) {
      const base = path.join(pki.dir, c.name.replace(/\W+/g, '_'));
      const req = (c.req ?? []).map((a) => masks[a] ?? a);
      openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', c.subj, ...req]);
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', pki.paths.ca, '-CAkey', pki.paths.caKey, '-set_serial', c.serial, '-days', '2', '-out', `${base}.pem`]);
      certs.set(c.name, { key: `${base}.key`, cert: `${base}.pem` });
    }
    server = tls.createServer({
      key: fs.readFileSync(pki.paths.key), cert: fs.readFileSync(pki.paths.cert), ca: fs.readFileSync(pki.paths.ca),
      requestCert: true, rejectUnauthorized: true, sessionTimeout: 0,
    }, (sock) => {
      // the fast path first: Node's X509 path would not disturb it, but the first call is what the server makes
      const fast = identityFromSocket(sock);
      const x509 = identityFromX509(sock);
      seen.push({ fast, x509, session: sock.getSession()!, raw: sock.getPeerX509Certificate()!.raw });
      sock.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });

  after(() => {
    server?.close();
    pki?.cleanup();
  });

  function connect(c: Case, maxVersion: tls.SecureVersion = 'TLSv1.3'): Promise<Seen> {
    const files = certs.get(c.name)!;
    const before = seen.length;
    return new Promise((resolve, reject) => {
      const sock = tls.connect({
        host: '127.0.0.1', port, servername: 'localhost', maxVersion,
        key: fs.readFileSync(files.key), cert: fs.readFileSync(files.cert), ca: fs.readFileSync(pki.paths.ca),
      });
      sock.on('error', reject);
      sock.on('close', () => (seen.length > before ? resolve(seen[seen.length - 1]) : reject(new Error('server saw no client'))));
      sock.resume();
    });
  }

  for (const c of CASES) {
    it(`${c.name}: the same CN, serial and fingerprint as Node's X509Certificate`, async () => {
      for (const v of ['TLSv1.3', 'TLSv1.2'] as const) {
        const s = await connect(c, v);
        assert.deepEqual(s.fast, s.x509, v);
        assert.equal(s.fast.cn, c.cn, v);
        assert.equal(s.fast.serial, c.canonical, v);
        assert.match(s.fast.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
        // the DER reader really found the peer's certificate in the session, and read it (or not)
        const der = peerCertificateFromSession(s.session);
        assert.ok(der && Buffer.from(der).equals(s.raw), `${v}: session DER holds the peer certificate`);
        if (c.fast === false) assert.equal(certFields(der), null, 'left to Node');
        else assert.deepEqual(certFields(der), { serial: c.canonical, cn: c.cn });
      }
    });
  }

  it('never throws on a damaged session or certificate: null, and the caller falls back', async () => {
    const s = await connect(CASES[0]);
    const cert = Buffer.from(peerCertificateFromSession(s.session)!);
    assert.equal(peerCertificateFromSession(Buffer.alloc(0)), null);
    assert.equal(certFields(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])), null);
    let seed = 7;
    const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    let parsed = 0;
    for (let i = 0; i < 3000; i++) {
      for (const orig of [s.session, cert]) {
        const b = Buffer.from(orig.subarray(0, rnd(3) === 0 ? rnd(orig.length) : orig.length));
        for (let k = rnd(4); k >= 0; k--) if (b.length) b[rnd(b.length)] = rnd(256);
        const der = orig === cert ? b : peerCertificateFromSession(b);
        if (der && certFields(der)) parsed++;
      }
    }
    assert.ok(parsed > 0, 'some damaged inputs still parse (bytes outside the fields read)');
  });

  it('remote address: host:port, [v6]:port, and "?" for a socket that has none left (reset before it was accepted)', () => {
    assert.equal(remoteOf({ remoteAddress: '10.1.2.3', remotePort: 8089 }), '10.1.2.3:8089');
    assert.equal(remoteOf({ remoteAddress: '::1', remotePort: 5 }), '[::1]:5');
    assert.equal(remoteOf({}), '?');
  });
});
