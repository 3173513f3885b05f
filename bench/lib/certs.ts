// Client credentials for the bench from the dev PKI. Many connections share a small pool of
// certificates (identity on the wire is the CoT uid, not the certificate), so 5,000 clients do not
// need 5,000 RSA keys; missing ones are issued with the project's own issueClient.
import fs from 'node:fs';
import path from 'node:path';
import { initPki, issueClient, pkiPaths } from '../../src/pki/index.ts';

export interface BenchCreds {
  ca: Buffer;
  /** server certificate and key (for the relay and the bare TLS server) */
  cert: Buffer;
  key: Buffer;
  clients: Array<{ cert: Buffer; key: Buffer }>;
}

/** The folder (inside the certs dir) that holds the bench client certificates. */
export function benchClientsDir(certsDir: string): string {
  return path.join(pkiPaths(certsDir).dir, 'bench-clients');
}

/**
 * Make sure the dev PKI exists (CA + server certificate, created when missing) and that `count`
 * bench client certificates bench-000 … exist; return them all read into memory.
 */
export async function benchCreds(certsDir: string, count: number, log: (s: string) => void = () => {}): Promise<BenchCreds> {
  const p = pkiPaths(certsDir);
  if (!fs.existsSync(p.ca)) {
    log(`no CA in ${p.dir}: creating a dev PKI (cotstream certs init)`);
    await initPki({ certsDir: p.dir, hosts: ['localhost', '127.0.0.1'] });
  }
  const dir = benchClientsDir(p.dir);
  const clients: BenchCreds['clients'] = [];
  const missing: string[] = [];
  const names = Array.from({ length: count }, (_, i) => `bench-${String(i).padStart(3, '0')}`);
  for (const n of names) if (!fs.existsSync(path.join(dir, `${n}.key`)) || !fs.existsSync(path.join(dir, `${n}.pem`))) missing.push(n);
  if (missing.length) {
    log(`issuing ${missing.length} bench client certificate(s) in ${dir}`);
    // a few at a time: key generation is native and runs in the thread pool
    for (let i = 0; i < missing.length; i += 4) {
      await Promise.all(missing.slice(i, i + 4).map((name) => issueClient({ certsDir: p.dir, name, outDir: dir, force: true })));
    }
  }
  for (const n of names) clients.push({ cert: fs.readFileSync(path.join(dir, `${n}.pem`)), key: fs.readFileSync(path.join(dir, `${n}.key`)) });
  return { ca: fs.readFileSync(p.ca), cert: fs.readFileSync(p.cert), key: fs.readFileSync(p.key), clients };
}
