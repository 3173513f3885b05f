// Start a real cotstream server for a test: in-process (fast, inspectable) or as a separate
// process through the real CLI. Both listen on ephemeral loopback ports.
import { Writable } from 'node:stream';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { buildConfig } from '../../src/config.ts';
import { createLogger } from '../../src/ops/log.ts';
import { CotServer } from '../../src/server.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface TestServer {
  server: CotServer;
  port: number;
  metricsPort: number;
  logs: Array<Record<string, unknown>>;
  stop(): Promise<void>;
  metricsText(): Promise<string>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

export async function startTestServer(certsDir: string, flags: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = {}): Promise<TestServer> {
  const cfg = buildConfig({ host: '127.0.0.1', port: '0', metricsHost: '127.0.0.1', metricsPort: '0', certsDir, logLevel: 'info', ...flags }, env);
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const server = new CotServer(cfg, createLogger(cfg.logLevel, sink));
  await server.start();
  const metricsText = async (): Promise<string> => (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  return {
    server, logs, port: server.tlsPort, metricsPort: server.metricsPort,
    stop: () => server.stop(),
    metricsText,
    async metric(name, labels = {}) {
      return metricValue(await metricsText(), name, labels);
    },
  };
}

/** Read one sample from Prometheus text format (0 when absent). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[2] ?? '').slice(1, -1).split(',').filter(Boolean)) {
      const [k, v] = kv.split('=');
      got[k] = JSON.parse(v) as string;
    }
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

export interface SpawnedServer {
  proc: ChildProcess;
  port: number;
  metricsPort: number;
  lines: Array<Record<string, unknown>>;
  stderr: string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Run `cotstream start` as its own process; resolves once it logs that it is listening.
 * `openFiles` runs it under that RLIMIT_NOFILE (soft and hard: Node raises the soft one to the hard).
 */
export function spawnServer(args: string[], env: NodeJS.ProcessEnv = {}, opts: { openFiles?: number } = {}): Promise<SpawnedServer> {
  const argv = [process.execPath, '--import', 'tsx', join(ROOT, 'src', 'cli.ts'), 'start', '--host', '127.0.0.1', '--port', '0', '--metrics-host', '127.0.0.1', '--metrics-port', '0', ...args];
  // the shell execs node: same pid, so signals and exit codes are the server's own
  const [cmd, ...rest] = opts.openFiles === undefined ? argv : ['/bin/sh', '-c', 'ulimit -n "$0" && exec "$@"', String(opts.openFiles), ...argv];
  const proc = spawn(cmd, rest, {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`server did not start: ${stderr}`)); }, 20000);
    proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      let i: number;
      while ((i = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, i);
        out = out.slice(i + 1);
        let rec: Record<string, unknown>;
        try { rec = JSON.parse(line) as Record<string, unknown>; } catch { continue; }
        lines.push(rec);
        if (rec.audit === 'listening') {
          clearTimeout(timer);
          const port = Number(String(rec.tls).split(':').pop());
          const metricsPort = Number(String(rec.metrics).split(':').pop());
          resolve({
            proc, port, metricsPort, lines, get stderr() { return stderr; }, exited,
            async stop(signal: NodeJS.Signals = 'SIGTERM') { if (proc.exitCode === null) proc.kill(signal); return exited; },
          });
        }
      }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`server exited (${code}) before listening: ${stderr}`)); });
  });
}

/** A metric of a spawned node, scraped now (its /metrics needs no token). */
export async function spawnedMetric(s: SpawnedServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(await (await fetch(`http://127.0.0.1:${s.metricsPort}/metrics`)).text(), name, labels);
}

/** The status /readyz of a spawned node answers. */
export async function readyzStatus(s: SpawnedServer): Promise<number> {
  return (await fetch(`http://127.0.0.1:${s.metricsPort}/readyz`)).status;
}

const execFileAsync = promisify(execFile);

/** The real CLI (`cotstream …`) in its own process, asynchronously: servers in this one keep serving. */
export function runCli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), ...args], { cwd: ROOT, timeout: 20000 });
}
