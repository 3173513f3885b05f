// A real HAProxy (Debian package, installed by `make test`) on a configuration given by the test,
// its stderr kept in `out`. Also the README's recipe ("Several machines"), as the tests run it.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { sleep } from './client.ts';
import { ROOT } from './server.ts';
import { tempDir } from './tmp.ts';

export const HAPROXY = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((p) => fs.existsSync(p)) ?? 'haproxy';

export class HaProxy {
  out = '';
  private constructor(readonly proc: ChildProcess, readonly v2port: number, readonly v1port: number, private readonly dir: string) {}

  /** HAProxy on a configuration of our own, once it listens on `probePort`; its stderr in `out`. */
  static async run(cfg: string, v2port: number, v1port = v2port): Promise<HaProxy> {
    const dir = tempDir('haproxy');
    fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
    const proc = spawn(HAPROXY, ['-db', '-f', path.join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const h = new HaProxy(proc, v2port, v1port, dir);
    proc.stdout!.on('data', (d: Buffer) => { h.out += d; });
    proc.stderr!.on('data', (d: Buffer) => { h.out += d; });
    for (const deadline = Date.now() + 10000; ;) {
      if (proc.exitCode !== null) throw new Error(`haproxy exited: ${h.out}`);
      const ok = await new Promise<boolean>((r) => { const s = net.connect(v1port, '127.0.0.1', () => { s.destroy(); r(true); }).on('error', () => r(false)); });
      if (ok) return h;
      if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`haproxy did not listen: ${h.out}`); }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null) await new Promise((r) => { this.proc.once('exit', r); this.proc.kill('SIGKILL'); });
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The HAProxy configuration the README gives for a cluster ("Several machines"), as written. */
export function readmeRecipe(): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = /```\n(defaults\n[\s\S]*?)```/.exec(readme.split('**Several machines**')[1] ?? '')?.[1];
  if (!block) throw new Error('the HAProxy recipe is not in the README under "Several machines"');
  return block;
}
