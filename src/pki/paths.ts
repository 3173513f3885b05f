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
  };
}
