// Real certificates for tests: one CA + server certificate + named clients in a temp dir.
// Key generation is native and fast, but share one PKI per test file (create it in `before`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { initPki, issueClient, type ClientResult, type PkiPaths } from '../../src/pki/index.ts';

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
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cotstream-pki-'));
  const paths = await initPki({ certsDir: dir, hosts });
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

/** The openssl exit status and combined output, for assertions that it fails. */
export function opensslStatus(args: string[]): { code: number; output: string } {
  try {
    const out = execFileSync('openssl', args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    return { code: 0, output: out };
  } catch (err) {
    const e = err as { status?: number; stderr?: string; stdout?: string };
    return { code: e.status ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}
