// CA, server and client certificates with node-forge. Keys come from node:crypto (native, async:
// forge's pure-JS RSA generation takes seconds and blocks the event loop); forge builds, signs
// and packages (PKCS#12) the certificates.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { X509Certificate, generateKeyPair, randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { pkiPaths, type PkiPaths } from './paths.ts';
import { assertKeyPrivate, assertNoneExist, writeFileAtomic, DIR_MODE, PUBLIC_MODE, SECRET_MODE } from './files.ts';
import { buildDataPackage, ITAK_LAYOUT } from './package.ts';
import { truststoreP12 } from './truststore.ts';
import { canonicalSerial } from '../auth/serial.ts';
import { ConfigError } from '../config.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

export const DEFAULTS = {
  bits: 2048,
  caDays: 3650,
  days: 365,
  caName: 'cotstream CA',
  port: 8089,
} as const;

/** Backdate notBefore so a device whose clock runs a little behind still accepts a fresh cert. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

/** Files kept outside the certs dir (`--ca`, `--ca-key`, `--cert`, `--key`, or their variables). */
export type PkiFiles = Partial<Pick<PkiPaths, 'ca' | 'caKey' | 'cert' | 'key'>>;

/** The certs dir's paths with the given files in place of its own. */
function withFiles(certsDir: string, files: PkiFiles | undefined): PkiPaths {
  const p = pkiPaths(certsDir);
  for (const k of ['ca', 'caKey', 'cert', 'key'] as const) if (files?.[k]) p[k] = path.resolve(files[k]!);
  return p;
}

export interface InitOptions {
  certsDir: string;
  files?: PkiFiles;
  bits?: number;
  hosts?: string[];
  force?: boolean;
  caDays?: number;
  days?: number;
  caName?: string;
}

export interface ClientOptions {
  certsDir: string;
  files?: PkiFiles;
  name: string;
  password?: string;
  outDir?: string;
  force?: boolean;
  bits?: number;
  days?: number;
  package?: boolean;
  host?: string;
  port?: number;
}

export interface ClientResult {
  name: string;
  /** what the operator should know (the package's address not in the server certificate, …) */
  warnings: string[];
  cert: string;
  key: string;
  p12: string;
  password: string;
  serial: string;
  package?: string;
  /** the same for iTAK, which wants every file at the top of the zip */
  itakPackage?: string;
  /** the server address the data package connects to (HOST:PORT) */
  connect?: string;
  /** where that address came from: --host, the server certificate's names, or this machine's address */
  connectFrom?: 'given' | 'certificate' | 'machine';
  truststore?: string;
  truststorePassword?: string;
}

/** Also the address default data packages point at: a phone connecting there must find it in the SAN. */
export function defaultHosts(): string[] {
  return [...new Set(['localhost', '127.0.0.1', os.hostname(), defaultConnectHost()])];
}

/** 128 random bits as a positive DER INTEGER (forge writes the hex bytes as given). */
export function randomSerialHex(): string {
  for (;;) {
    const hex = canonicalSerial(randomBytes(16).toString('hex'));
    if (hex === '0') continue;
    const even = hex.length % 2 ? '0' + hex : hex;
    // a leading byte >= 0x80 would read as negative: prefix a zero byte, as DER requires
    return parseInt(even.slice(0, 2), 16) >= 0x80 ? '00' + even : even;
  }
}

/** Random password for PKCS#12 files: 20 characters of 57 (~117 bits); ATAK/WinTAK choke on some symbols. */
export function randomPassword(length = 20): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}

function checkBits(bits: number): number {
  if (!Number.isInteger(bits) || bits < 2048 || bits > 8192) throw new ConfigError(`--bits must be an integer from 2048 to 8192 (got ${bits})`);
  return bits;
}

function checkDays(days: number, what: string): number {
  if (!Number.isInteger(days) || days < 1 || days > 36500) throw new ConfigError(`${what} must be a whole number of days from 1 to 36500 (got ${days})`);
  return days;
}

async function newKey(bits: number): Promise<{ pem: string; key: forge.pki.rsa.PrivateKey; pub: forge.pki.rsa.PublicKey }> {
  const { privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: checkBits(bits),
    publicExponent: 0x10001,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const key = forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey;
  return { pem: privateKey, key, pub: forge.pki.rsa.setPublicKey(key.n, key.e) };
}

function baseCert(pub: forge.pki.PublicKey, days: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = pub;
  cert.serialNumber = randomSerialHex();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - CLOCK_SKEW_MS);
  cert.validity.notAfter = new Date(now + days * DAY_MS);
  return cert;
}

/**
 * A certificate never outlives the CA that signs it: from that day devices refuse the chain,
 * whatever the certificate says. Cut to the CA's end, and said (a CA made elsewhere may be short-lived).
 */
function withinCa(cert: forge.pki.Certificate, ca: forge.pki.Certificate, what: string, warnings: string[]): void {
  if (cert.validity.notAfter.getTime() <= ca.validity.notAfter.getTime()) return;
  cert.validity.notAfter = new Date(ca.validity.notAfter.getTime());
  warnings.push(`the CA expires on ${cert.validity.notAfter.toISOString()}: the ${what} certificate is valid until then, not for the --days asked (renew the CA before that day: devices refuse everything it signed from then on)`);
}

/** The CA's key identifier, for the AKI of what it signs: as its own certificate states it (a CA
 *  made elsewhere may have chosen it another way than the SHA-1 of its key, and a chain is built by
 *  matching the two), else the SHA-1 of its key. */
function ski(cert: forge.pki.Certificate): string {
  const ext = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  return ext?.subjectKeyIdentifier ? forge.util.hexToBytes(ext.subjectKeyIdentifier) : cert.generateSubjectKeyIdentifier().getBytes();
}

function sign(cert: forge.pki.Certificate, key: forge.pki.rsa.PrivateKey): void {
  cert.sign(key, forge.md.sha256.create());
}

function altNames(hosts: string[]): { type: number; value?: string; ip?: string }[] {
  // SAN types: 2 = dNSName, 7 = iPAddress
  return hosts.map((h) => (net.isIP(h) ? { type: 7, ip: h } : { type: 2, value: h }));
}

const HOST_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/;

/** A host name, not digits and dots that fail as an IPv4 address (999.1.1.1, 1.2.3). */
function isHostName(h: string): boolean {
  return HOST_NAME.test(h) && !/^[0-9.]+$/.test(h);
}

function validHostList(hosts: string[]): string[] {
  const out = [...new Set(hosts.map((h) => h.trim()).filter(Boolean))];
  if (!out.length) throw new ConfigError('at least one host name or IP address is needed for the server certificate');
  for (const h of out) {
    if (!net.isIP(h) && !isHostName(h)) throw new ConfigError(`not a host name or IP address: ${JSON.stringify(h)}`);
  }
  return out;
}

/**
 * The address a data package dials. ATAK reads its connect string as HOST:PORT:PROTOCOL, split at
 * every ':', so a port, a scheme or an IPv6 address in the host would be read as something else.
 */
function validConnectHost(host: string): string {
  const h = host.trim();
  const fix = 'the package\'s --host is a host name or an IPv4 address, without port or scheme (the port is --port)';
  if (net.isIPv6(h)) throw new ConfigError(`--host ${JSON.stringify(host)}: ATAK's connect string (HOST:PORT:ssl) cannot hold an IPv6 address; give a host name that resolves to it`);
  if (!h || h.startsWith('*') || (!net.isIPv4(h) && !isHostName(h))) throw new ConfigError(`--host ${JSON.stringify(host)}: ${fix}`);
  return h;
}

/** The DNS names and IP addresses a certificate's SAN holds (empty when it has none or is unreadable). */
export function certificateHosts(file: string): string[] {
  let x: X509Certificate;
  try {
    x = new X509Certificate(fs.readFileSync(file));
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const entry of (x.subjectAltName ?? '').split(', ')) {
    const m = /^(DNS|IP Address):(.+)$/.exec(entry);
    if (m) out.push(m[2]!);
  }
  // no SAN (a certificate made by hand, or by FreeTAKServer's tools): clients that accept one
  // check the name against its CN, so that is the name it is valid for
  const cn = /^CN=(.+)$/m.exec(x.subject)?.[1]?.trim();
  if (!out.length && cn && (net.isIP(cn) || HOST_NAME.test(cn))) out.push(cn);
  return out;
}

/** Whether a certificate naming `hosts` is valid for `host` (RFC 6125: a wildcard covers one label). */
function covers(hosts: string[], host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return hosts.some((n) => {
    const name = n.toLowerCase().replace(/\.$/, '');
    if (name === h) return true;
    return name.startsWith('*.') && h.endsWith(name.slice(1)) && !h.slice(0, -name.length + 1).includes('.');
  });
}

const LOOPBACK = (h: string) => h === 'localhost' || h.startsWith('127.') || h === '::1';

/** Apple devices (iTAK) refuse a TLS server certificate valid for longer than this. */
const APPLE_MAX_SERVER_DAYS = 825;

/** A server certificate for `hosts` (SAN; CN the first name), signed by the CA. */
function serverCert(pub: forge.pki.PublicKey, hosts: string[], days: number, ca: forge.pki.Certificate, caKey: forge.pki.rsa.PrivateKey, warnings: string[]): forge.pki.Certificate {
  const server = baseCert(pub, days);
  if (days > APPLE_MAX_SERVER_DAYS) {
    warnings.push(`the server certificate is valid for ${days} days: iOS and macOS (iTAK) refuse a TLS server certificate valid for more than ${APPLE_MAX_SERVER_DAYS} days; ATAK and WinTAK accept it`);
  }
  withinCa(server, ca, 'server', warnings);
  server.setSubject([
    { name: 'commonName', value: hosts.find((h) => !net.isIP(h) && h !== 'localhost') ?? hosts[0] },
    { name: 'organizationName', value: 'cotstream' },
  ]);
  server.setIssuer(ca.subject.attributes);
  server.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: altNames(hosts) },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: ski(ca) },
  ]);
  sign(server, caKey);
  return server;
}

export interface ServerOptions {
  certsDir: string;
  files?: PkiFiles;
  hosts?: string[];
  bits?: number;
  days?: number;
  force?: boolean;
}

/**
 * A new server certificate and key from the existing CA (renewal, new addresses): every client
 * certificate and data package stays valid, unlike `init --force`, which makes a new CA. The old
 * pair is kept as server.pem.old / server.key.old. Needs --force when a server certificate exists.
 */
export async function issueServer(o: ServerOptions): Promise<PkiPaths & { hosts: string[]; hostsFrom: 'given' | 'previous' | 'default'; serial: string; notAfter: Date; warnings: string[] }> {
  const p = withFiles(o.certsDir, o.files);
  // a renewal keeps the names devices dial: those of the certificate it replaces
  const previous = o.hosts?.length ? [] : certificateHosts(p.cert);
  const hostsFrom = o.hosts?.length ? 'given' : previous.length ? 'previous' : 'default';
  const hosts = validHostList(o.hosts?.length ? o.hosts : previous.length ? previous : defaultHosts());
  const days = checkDays(o.days ?? DEFAULTS.days, '--days');
  const bits = checkBits(o.bits ?? DEFAULTS.bits);
  const ca = loadCa(o.certsDir, o.files);
  assertNoneExist([p.cert, p.key], o.force);
  const k = await newKey(bits);
  const warnings: string[] = [];
  const server = serverCert(k.pub, hosts, days, ca.cert, ca.key, warnings);
  for (const [f, mode] of [[p.key, SECRET_MODE], [p.cert, PUBLIC_MODE]] as const) {
    if (fs.existsSync(f)) writeFileAtomic(`${f}.old`, fs.readFileSync(f), mode);
  }
  // key first: a crash in between leaves no certificate without its key
  writeFileAtomic(p.key, k.pem, SECRET_MODE);
  writeFileAtomic(p.cert, forge.pki.certificateToPem(server), PUBLIC_MODE);
  return { ...p, hosts, hostsFrom, serial: canonicalSerial(server.serialNumber), notAfter: server.validity.notAfter, warnings };
}

/** Create the CA and the server certificate in certsDir. Never overwrites without force. */
export async function initPki(o: InitOptions): Promise<PkiPaths & { warnings: string[] }> {
  const p = withFiles(o.certsDir, o.files);
  const bits = o.bits ?? DEFAULTS.bits;
  const hosts = validHostList(o.hosts?.length ? o.hosts : defaultHosts());
  const caDays = checkDays(o.caDays ?? DEFAULTS.caDays, '--ca-days');
  const days = checkDays(o.days ?? DEFAULTS.days, '--days');
  const caName = o.caName ?? DEFAULTS.caName;
  checkBits(bits);
  assertNoneExist([p.ca, p.caKey, p.cert, p.key], o.force);

  const [caKey, serverKey] = await Promise.all([newKey(bits), newKey(bits)]);

  const ca = baseCert(caKey.pub, caDays);
  const caSubject = [
    { name: 'commonName', value: caName },
    { name: 'organizationName', value: 'cotstream' },
  ];
  ca.setSubject(caSubject);
  ca.setIssuer(caSubject);
  ca.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  sign(ca, caKey.key);

  const warnings: string[] = [];
  const server = serverCert(serverKey.pub, hosts, days, ca, caKey.key, warnings);

  fs.mkdirSync(p.dir, { recursive: true, mode: DIR_MODE });
  for (const f of [p.ca, p.caKey, p.cert, p.key]) fs.mkdirSync(path.dirname(f), { recursive: true, mode: DIR_MODE });
  // keys first: a crash in between leaves no certificate without its key
  writeFileAtomic(p.caKey, caKey.pem, SECRET_MODE);
  writeFileAtomic(p.key, serverKey.pem, SECRET_MODE);
  writeFileAtomic(p.ca, forge.pki.certificateToPem(ca), PUBLIC_MODE);
  writeFileAtomic(p.cert, forge.pki.certificateToPem(server), PUBLIC_MODE);
  return { ...p, warnings };
}

export interface LoadedCa {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  pem: string;
}

export function loadCa(certsDir: string, files?: PkiFiles): LoadedCa {
  const p = withFiles(certsDir, files);
  for (const f of [p.ca, p.caKey]) {
    if (!fs.existsSync(f)) throw new Error(`no CA: ${f} is missing (run \`cotstream certs init --certs-dir ${certsDir}\` first, or point --ca / --ca-key at yours)`);
  }
  try {
    assertKeyPrivate(p.caKey);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const pem = fs.readFileSync(p.ca, 'utf8');
  let cert: forge.pki.Certificate;
  try {
    cert = forge.pki.certificateFromPem(pem);
  } catch (err) {
    throw new ConfigError(`cannot use the CA certificate ${p.ca}: ${(err as Error).message} (cotstream's PKI commands sign with an RSA CA in PEM; the server itself trusts any CA)`);
  }
  let key: forge.pki.rsa.PrivateKey;
  const keyPem = fs.readFileSync(p.caKey, 'utf8');
  try {
    key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  } catch (err) {
    const why = /ENCRYPTED/.test(keyPem) ? 'it is passphrase-protected; give an unencrypted copy (openssl pkey -in KEY -out ca-plain.key, mode 0600)' : (err as Error).message;
    throw new ConfigError(`cannot use the CA key ${p.caKey}: ${why} (an RSA key in PEM is needed)`);
  }
  // a key from another CA would sign certificates nobody accepts: say so before issuing any
  const pub = cert.publicKey as forge.pki.rsa.PublicKey;
  if (!pub.n || pub.n.compareTo(key.n) !== 0 || pub.e.compareTo(key.e) !== 0) {
    throw new Error(`the CA key ${p.caKey} does not belong to the CA certificate ${p.ca}`);
  }
  return { pem, cert, key };
}

const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** PKCS#12 with 3DES: the one PBE every ATAK/WinTAK/Java/OpenSSL 3 reads without a legacy provider. */
function p12(key: forge.pki.rsa.PrivateKey, certs: forge.pki.Certificate[], password: string, friendlyName: string): Buffer {
  const asn1 = forge.pkcs12.toPkcs12Asn1(key, certs, password, { algorithm: '3des', friendlyName });
  return Buffer.from(forge.asn1.toDer(asn1).getBytes(), 'binary');
}

/** Passwords every TAK guide and tool ships with (lower case): refused for a client's .p12. */
const WELL_KNOWN_PASSWORDS = new Set(['atakatak', 'changeit', 'changeme', 'password', 'supersecret', 'takserver', 'cotstream', '123456', '1234567', '12345678', '123456789', 'qwerty', 'letmein']);

/** A client certificate signed by the CA: PEM cert + key, a PKCS#12 for ATAK, optionally a data package. */
export async function issueClient(o: ClientOptions): Promise<ClientResult> {
  if (!CLIENT_NAME.test(o.name)) {
    throw new ConfigError(`client name ${JSON.stringify(o.name)} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  if (o.password !== undefined && o.password.length < 6) throw new ConfigError('--password (or COTSTREAM_P12_PASSWORD) must be at least 6 characters (Android keystores refuse shorter)');
  // the package's preferences file is ASCII, and keystores disagree on how other characters become bytes
  if (o.password !== undefined && !/^[\x20-\x7e]+$/.test(o.password)) throw new ConfigError('--password (or COTSTREAM_P12_PASSWORD) must be printable ASCII (letters, digits, punctuation, space)');
  if (o.password !== undefined && WELL_KNOWN_PASSWORDS.has(o.password.toLowerCase())) {
    throw new ConfigError(`--password ${JSON.stringify(o.password)} is a well-known default (TAK Server, FreeTAKServer, Java keystores): anyone who gets the .p12 opens it with it; choose another, or leave --password out for a random one`);
  }
  const p = withFiles(o.certsDir, o.files);
  const outDir = path.resolve(o.outDir ?? p.clientsDir);
  const givenHost = o.package && o.host !== undefined ? validConnectHost(o.host) : undefined;
  const days = checkDays(o.days ?? DEFAULTS.days, '--days');
  const bits = checkBits(o.bits ?? DEFAULTS.bits);
  const files = {
    cert: path.join(outDir, `${o.name}.pem`),
    key: path.join(outDir, `${o.name}.key`),
    p12: path.join(outDir, `${o.name}.p12`),
    truststore: path.join(outDir, `${o.name}-truststore.p12`),
    package: path.join(outDir, `${o.name}.zip`),
    itakPackage: path.join(outDir, `${o.name}-itak.zip`),
  };
  const ca = loadCa(o.certsDir, o.files);
  assertNoneExist(o.package ? Object.values(files) : [files.cert, files.key, files.p12], o.force);

  const k = await newKey(bits);
  const cert = baseCert(k.pub, days);
  cert.setSubject([
    { name: 'commonName', value: o.name },
    { name: 'organizationName', value: 'cotstream' },
  ]);
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
    // 6 = uniformResourceIdentifier: names the client without pretending it is a host
    { name: 'subjectAltName', altNames: [{ type: 6, value: `urn:cotstream:client:${o.name}` }] },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: ski(ca.cert) },
  ]);
  const warnings: string[] = [];
  withinCa(cert, ca.cert, 'client', warnings);
  sign(cert, ca.key);

  const password = o.password ?? randomPassword();
  fs.mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const p12Der = p12(k.key, [cert, ca.cert], password, o.name);
  writeFileAtomic(files.key, k.pem, SECRET_MODE);
  writeFileAtomic(files.cert, forge.pki.certificateToPem(cert), PUBLIC_MODE);
  writeFileAtomic(files.p12, p12Der, SECRET_MODE);

  const result: ClientResult = {
    name: o.name,
    cert: files.cert,
    key: files.key,
    p12: files.p12,
    password,
    serial: canonicalSerial(cert.serialNumber),
    warnings,
  };
  if (o.package) {
    // the truststore holds the CA certificate and nothing else: no key, no server certificate.
    // Its password guards only public data, so it is the client's: one password per device to type.
    const truststorePassword = password;
    const trustDer = truststoreP12(ca.cert, truststorePassword, 'cotstream-ca');
    writeFileAtomic(files.truststore, trustDer, SECRET_MODE);
    // a phone that checks the server's name must find the address it dials in the certificate
    const names = certificateHosts(p.cert);
    const { host, from } = connectHost(givenHost, names);
    if (!names.length) {
      result.warnings.push(`no readable server certificate at ${p.cert} to check the package's address ${host} against (a device that checks the server's name needs it there; --cert names another)`);
    } else if (!covers(names, host)) {
      result.warnings.push(
        `the server certificate ${p.cert} is not valid for ${host} (it names ${names.join(', ')}): a device that checks the server's name refuses it. ` +
          `Reissue it with \`cotstream certs server --force --host ${[...names, host].join(',')}\`, or give --host one of its names`,
      );
    }
    const port = o.port ?? DEFAULTS.port;
    const input = { name: o.name, host, port, clientP12: p12Der, clientPassword: password, truststoreP12: trustDer, truststorePassword };
    writeFileAtomic(files.package, buildDataPackage(input), SECRET_MODE);
    writeFileAtomic(files.itakPackage, buildDataPackage({ ...input, layout: ITAK_LAYOUT, zipName: path.basename(files.itakPackage) }), SECRET_MODE);
    Object.assign(result, { package: files.package, itakPackage: files.itakPackage, connect: `${host}:${port}`, connectFrom: from, truststore: files.truststore, truststorePassword });
  }
  return result;
}

/**
 * The address a package dials: --host; else this machine's address when the server certificate
 * covers it (or there is none to ask); else the certificate's first name that is not loopback (a
 * server certified for tak.example.org is dialled there).
 */
function connectHost(given: string | undefined, names: string[]): { host: string; from: 'given' | 'certificate' | 'machine' } {
  if (given !== undefined) return { host: given, from: 'given' };
  const mine = defaultConnectHost();
  if (!names.length || covers(names, mine)) return { host: mine, from: 'machine' };
  const named = names.find((n) => !LOOPBACK(n) && !n.startsWith('*') && !net.isIPv6(n));
  return named ? { host: named, from: 'certificate' } : { host: mine, from: 'machine' };
}

/** The address a phone most likely reaches this machine at: first non-internal IPv4, else the hostname. */
export function defaultConnectHost(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return os.hostname();
}
