// Real certificates for tests: one CA + server certificate + named clients in a temp dir.
// Key generation is native and fast, but share one PKI per test file (create it in `before`).
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { initPki, issueClient, type ClientResult, type PkiPaths } from '../../src/pki/index.ts';
import { tempDir } from './tmp.ts';

export interface TestPki {
  dir: string;
  paths: PkiPaths;
  clients: Record<string, ClientResult>;
  /** Issue one more client from the same CA. */
  client(name: string, opts?: { package?: boolean; host?: string }): Promise<ClientResult>;
  /** Remove the temp dir. */
  cleanup(): void;
}

export async function makePki(clientNames: string[] = ['alpha', 'bravo'], hosts = ['localhost', '127.0.0.1']): Promise<TestPki> {
  const dir = tempDir('pki');
  const { warnings: _warnings, ...paths } = await initPki({ certsDir: dir, hosts });
  const clients: Record<string, ClientResult> = {};
  const t: TestPki = {
    dir,
    paths,
    clients,
    async client(name, opts = {}) {
      const r = await issueClient({ certsDir: dir, name, ...opts });
      clients[name] = r;
      return r;
    },
    cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const n of clientNames) await t.client(n);
  return t;
}

/** Run openssl; returns stdout (throws with stderr on a non-zero exit). */
export function openssl(args: string[], input?: string | Buffer): string {
  try {
    return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
  }
}

/** The openssl exit status and combined stdout + stderr (openssl reports "verify OK" on stderr). */
export function opensslStatus(args: string[]): { code: number; output: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { code: r.status ?? -1, output: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/**
 * A PEM CRL made by `openssl ca -gencrl` (not by our code), revoking the given canonical serials:
 * the independent stand-in for a FreeTAKServer FTS_CRL.json.
 */
export function opensslCrl(pki: { dir: string; paths: PkiPaths }, serials: string[], reason = 'keyCompromise'): string {
  const work = tempDir('opensslca');
  try {
    const ts = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
    const now = new Date();
    const later = new Date(now.getTime() + 365 * 86400_000);
    const lines = serials.map((s) => {
      const hex = (s.length % 2 ? '0' + s : s).toUpperCase();
      return `R\t${ts(later)}\t${ts(now)},${reason}\t${hex}\tunknown\t/CN=revoked-${s.slice(0, 6)}\n`;
    });
    fs.writeFileSync(path.join(work, 'index.txt'), lines.join(''));
    fs.writeFileSync(path.join(work, 'crlnumber'), '1000\n');
    fs.writeFileSync(
      path.join(work, 'ca.cnf'),
      `[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = ${work}/index.txt\ncrlnumber = ${work}/crlnumber\ndefault_md = sha256\n` +
        `default_crl_days = 100\ncertificate = ${pki.paths.ca}\nprivate_key = ${pki.paths.caKey}\n`,
    );
    openssl(['ca', '-gencrl', '-batch', '-config', path.join(work, 'ca.cnf'), '-out', path.join(work, 'crl.pem')]);
    return fs.readFileSync(path.join(work, 'crl.pem'), 'utf8');
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

export interface SharedPki {
  dir: string;
  ca: string;
  /** credentials by name, issued once per run: the test client needs the CA too to verify the server */
  client(name: string): Promise<ClientResult & { ca: string }>;
}

const shared = new Map<string, Promise<SharedPki>>();

/** One PKI per label for the whole test run (the label "foreign" gives a second, unrelated CA). */
export function testPki(label = 'main'): Promise<SharedPki> {
  let p = shared.get(label);
  if (!p) {
    p = makePki([]).then((t) => {
      const issued = new Map<string, Promise<ClientResult & { ca: string }>>();
      return {
        dir: t.dir,
        ca: t.paths.ca,
        client(name: string) {
          let c = issued.get(name);
          if (!c) {
            c = t.client(name).then((r) => ({ ...r, ca: t.paths.ca }));
            issued.set(name, c);
          }
          return c;
        },
      };
    });
    shared.set(label, p);
  }
  return p;
}

/** A pino logger that keeps its lines for assertions. */
export function memoryLogger(level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const stream = { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) };
  return { lines, log: pino({ level }, stream) };
}
