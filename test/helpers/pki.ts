// Throwaway PKIs made with the product's own PKI code, once per test run, in temp directories.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initPki, issueClient } from '../../src/pki/index.ts';

export interface TestPki {
  dir: string;
  ca: string;
  /** client credentials by name: cert, key, ca (for the test client to verify the server) */
  client(name: string): Promise<{ cert: string; key: string; ca: string; serial: string; p12: string; password: string }>;
}

const cache = new Map<string, Promise<TestPki>>();

/** A PKI per label (the "foreign" label makes a second, unrelated CA). */
export function testPki(label = 'main'): Promise<TestPki> {
  let p = cache.get(label);
  if (!p) {
    p = (async () => {
      const dir = mkdtempSync(join(tmpdir(), `cotstream-pki-${label}-`));
      await initPki({ certsDir: dir, hosts: ['localhost', '127.0.0.1'] });
      const issued = new Map<string, Promise<{ cert: string; key: string; ca: string; serial: string; p12: string; password: string }>>();
      return {
        dir,
        ca: join(dir, 'ca.pem'),
        client(name: string) {
          let c = issued.get(name);
          if (!c) {
            c = issueClient({ certsDir: dir, name, password: 'test-password' }).then((r) => ({ cert: r.cert, key: r.key, ca: join(dir, 'ca.pem'), serial: r.serial, p12: r.p12, password: r.password }));
            issued.set(name, c);
          }
          return c;
        },
      };
    })();
    cache.set(label, p);
  }
  return p;
}
