// A real Prometheus server (Debian's `prometheus` package, installed by `make test`) on a free
// loopback port with a throwaway TSDB, plus promtool. Tests drive it through its HTTP API.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { sleep } from './client.ts';
import { freePort } from './net.ts';
import { tempDir } from './tmp.ts';

export interface PromResult { metric: Record<string, string>; value: [number, string] }

export interface PrometheusServer {
  url: string;
  dir: string;
  proc: ChildProcess;
  /** instant query; throws on a PromQL error */
  query(q: string): Promise<PromResult[]>;
  /** poll an instant query until `pred` holds on its result */
  waitFor(q: string, pred: (r: PromResult[]) => boolean, ms?: number): Promise<PromResult[]>;
  api<T = unknown>(pathAndQuery: string): Promise<T>;
  stop(): Promise<void>;
}

export { freePort };

/** promtool with arguments (and optional stdin); never throws, returns status and output. */
export function promtool(args: string[], input?: string): { code: number; out: string } {
  const r = spawnSync('promtool', args, { input, encoding: 'utf8', timeout: 30000 });
  if (r.error) throw new Error(`promtool could not run (is Debian's prometheus package installed? make test installs it): ${r.error.message}`);
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/**
 * Start Prometheus with `config` (YAML; JSON is YAML too) written to a temp dir, which also holds
 * its TSDB. Retries with another port if the one picked was taken in between.
 */
export async function startPrometheus(config: string, files: Record<string, string> = {}): Promise<PrometheusServer> {
  const dir = tempDir('prom');
  for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), body, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), config);
  let lastErr = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const proc = spawn('prometheus', [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--web.enable-lifecycle',
      '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 20000;
    let ready = false;
    while (Date.now() < deadline && proc.exitCode === null) {
      try {
        if ((await fetch(`${url}/-/ready`)).ok) { ready = true; break; }
      } catch { /* not listening yet */ }
      await sleep(100);
    }
    if (!ready) {
      proc.kill('SIGKILL');
      await exited;
      lastErr = stderr;
      continue;
    }
    const api = async <T>(p: string): Promise<T> => {
      const res = await fetch(`${url}${p}`);
      const body = await res.json() as { status: string; data: T; error?: string };
      if (body.status !== 'success') throw new Error(`Prometheus ${p}: ${body.error ?? res.status}`);
      return body.data;
    };
    const query = async (q: string): Promise<PromResult[]> =>
      (await api<{ result: PromResult[] }>(`/api/v1/query?query=${encodeURIComponent(q)}`)).result;
    return {
      url, dir, proc, api, query,
      async waitFor(q, pred, ms = 20000) {
        const until = Date.now() + ms;
        let last: PromResult[] = [];
        for (;;) {
          last = await query(q);
          if (pred(last)) return last;
          if (Date.now() > until) throw new Error(`Prometheus: "${q}" never satisfied the condition; last result ${JSON.stringify(last)}`);
          await sleep(250);
        }
      },
      async stop() {
        if (proc.exitCode === null) proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  throw new Error(`Prometheus did not start: ${lastErr}`);
}

/** The value of a one-sample instant query result (NaN when empty). */
export function scalar(r: PromResult[]): number {
  return r.length === 1 ? Number(r[0].value[1]) : NaN;
}
