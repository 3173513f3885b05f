import path from 'node:path';

/** Where every PKI file lives inside one certs directory (shared by `certs`, `revoke`, `crl`, `start`). */
export interface PkiPaths {
  dir: string;
  ca: string;
  caKey: string;
  cert: string;
  key: string;
  clientsDir: string;
  crl: string;
  crlPem: string;
  /** the list a Redis cluster shares, as a node keeps it (auth/cluster-crl.ts) */
  crlCluster: string;
}

/**
 * The signed copy of a revocation list, when there is one to fall back on: only for the default
 * list (<certs-dir>/crl.json), which every `revoke` writes together with <certs-dir>/crl.pem. A
 * list kept elsewhere (`--crl`, FreeTAKServer's FTS_CRL.json) has no copy of its own.
 */
export function signedCopyFor(crl: string, certsDir: string): string | undefined {
  const p = pkiPaths(certsDir);
  return path.resolve(crl) === p.crl ? p.crlPem : undefined;
}

export function pkiPaths(certsDir: string): PkiPaths {
  const dir = path.resolve(certsDir);
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    caKey: path.join(dir, 'ca.key'),
    cert: path.join(dir, 'server.pem'),
    key: path.join(dir, 'server.key'),
    clientsDir: path.join(dir, 'clients'),
    crl: path.join(dir, 'crl.json'),
    crlPem: path.join(dir, 'crl.pem'),
    crlCluster: path.join(dir, 'crl-cluster.pem'),
  };
}
