// Client credentials for the bench. Two ways:
//  - the bench's own: a cotstream PKI directory (--certs-dir) whose CA key issues a small pool of
//    client certificates (identity on the wire is the CoT uid, not the certificate, so 5,000
//    clients do not need 5,000 RSA keys); missing ones are issued with the project's issueClient;
//  - the tester's own (ownCreds): the server's CA certificate and one client certificate it accepts,
//    as PEM files or a .p12, shared by every connection. Nothing is written anywhere.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initPki, issueClient, pkiPaths } from '../../src/pki/index.ts';

export interface BenchCreds {
  ca: Buffer;
  /** server certificate and key (for the relay and the bare TLS server) */
  cert: Buffer;
  key: Buffer;
  clients: Array<{ cert: Buffer; key: Buffer }>;
}

/** The repository's dev PKI (certs/, what `make run` and `make bench` use): the one PKI the bench creates itself. */
export const DEV_CERTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'certs');

/** The options that connect with the tester's own certificate instead (load.ts), for error messages. */
export const OWN_CERT_HINT = 'to test a server whose CA key you do not hold, give its CA and one client certificate it accepts: ' +
  '--ca CA.pem --client-cert CLIENT.pem --client-key CLIENT.key (or --client-p12 CLIENT.p12, password in $LOAD_P12_PASSWORD)';

/** The folder (inside the certs dir) that holds the bench client certificates. */
export function benchClientsDir(certsDir: string): string {
  return path.join(pkiPaths(certsDir).dir, 'bench-clients');
}

/**
 * The CA (and server certificate and key) of `certsDir` and `count` bench client certificates
 * bench-000 …, issued by its CA when missing; all read into memory.
 *
 * A PKI is created only in the bench's own directory: the repository's certs/ (as `make run` does),
 * or where `create` says so (a throwaway directory of the caller's). Anywhere else a missing CA, or
 * a missing CA key when certificates must be issued, is an error: a mistyped --certs-dir must not
 * quietly make a new CA, and a PKI without its CA key is someone else's.
 */
export async function benchCreds(certsDir: string, count: number, log: (s: string) => void = () => {}, o: { create?: boolean } = {}): Promise<BenchCreds> {
  const p = pkiPaths(certsDir);
  const create = o.create ?? p.dir === path.resolve(DEV_CERTS_DIR);
  if (!fs.existsSync(p.ca)) {
    if (!create) {
      throw new Error(`no CA in ${p.dir} (${path.basename(p.ca)} is missing): check --certs-dir. The bench creates a dev PKI only in the repository's own ` +
        `${path.relative(process.cwd(), DEV_CERTS_DIR) || 'certs'}/ (make bench); ${OWN_CERT_HINT}`);
    }
    log(`no CA in ${p.dir}: creating a dev PKI (cotstream certs init)`);
    await initPki({ certsDir: p.dir, hosts: ['localhost', '127.0.0.1'] });
  }
  const dir = benchClientsDir(p.dir);
  const clients: BenchCreds['clients'] = [];
  const missing: string[] = [];
  const names = Array.from({ length: count }, (_, i) => `bench-${String(i).padStart(3, '0')}`);
  for (const n of names) if (!fs.existsSync(path.join(dir, `${n}.key`)) || !fs.existsSync(path.join(dir, `${n}.pem`))) missing.push(n);
  if (missing.length) {
    if (!fs.existsSync(p.caKey)) {
      throw new Error(`${p.dir} has no CA key (${path.basename(p.caKey)}): the bench cannot issue its client certificates there; ${OWN_CERT_HINT}`);
    }
    log(`issuing ${missing.length} bench client certificate(s) in ${dir} (signed by the CA of ${p.dir})`);
    // a few at a time: key generation is native and runs in the thread pool
    for (let i = 0; i < missing.length; i += 4) {
      await Promise.all(missing.slice(i, i + 4).map((name) => issueClient({ certsDir: p.dir, name, outDir: dir, force: true })));
    }
  }
  for (const n of names) clients.push({ cert: fs.readFileSync(path.join(dir, `${n}.pem`)), key: fs.readFileSync(path.join(dir, `${n}.key`)) });
  const need = (f: string, what: string): Buffer => {
    if (!fs.existsSync(f)) throw new Error(`${p.dir} has no ${what} (${path.basename(f)})`);
    return fs.readFileSync(f);
  };
  // the server's files are needed by the relay only: read when present
  const opt = (f: string): Buffer => (fs.existsSync(f) ? fs.readFileSync(f) : Buffer.alloc(0));
  return { ca: need(p.ca, 'CA certificate'), cert: opt(p.cert), key: opt(p.key), clients };
}

/** The relay's files: CA, server certificate and key of `certsDir` (created only as benchCreds says). */
export async function serverCreds(certsDir: string, log: (s: string) => void = () => {}): Promise<BenchCreds> {
  const c = await benchCreds(certsDir, 0, log);
  const p = pkiPaths(certsDir);
  if (!c.cert.length || !c.key.length) throw new Error(`${p.dir} has no server certificate and key (${path.basename(p.cert)}, ${path.basename(p.key)})`);
  return c;
}

/** A file an option names, read; the error names the option. */
export function readOptionFile(f: string, opt: string): Buffer {
  try { return fs.readFileSync(f); } catch (err) { throw new Error(`${opt} ${f}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`); }
}

/** The tester's own credentials (load.ts --ca, --client-cert/--client-key or --client-p12). */
export interface OwnCredsOptions {
  /** the CA certificate(s) that signed the server's certificate, PEM */
  ca?: string;
  clientCert?: string;
  clientKey?: string;
  clientP12?: string;
  /** the .p12's password */
  p12Password?: string;
}

/** Secure-context options for every connection, from the tester's own files (see OwnCredsOptions). */
export function ownCreds(o: OwnCredsOptions): { ca?: Buffer; cert?: Buffer; key?: Buffer; pfx?: Buffer; passphrase?: string } {
  if (o.clientP12 && (o.clientCert || o.clientKey)) throw new Error('--client-p12 or --client-cert/--client-key, not both');
  if (!o.clientP12 && !!o.clientCert !== !!o.clientKey) throw new Error('--client-cert and --client-key go together');
  const ca = o.ca ? readOptionFile(o.ca, '--ca') : undefined;
  if (o.clientP12) return { ca, pfx: readOptionFile(o.clientP12, '--client-p12'), passphrase: o.p12Password ?? '' };
  if (!ca) throw new Error('--client-cert needs --ca: the CA certificate that signed the server\'s certificate (PEM), to verify the server');
  return { ca, cert: readOptionFile(o.clientCert!, '--client-cert'), key: readOptionFile(o.clientKey!, '--client-key') };
}
