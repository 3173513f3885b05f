// A real, throwaway redis-server for tests: a free port, a temp dir, no persistence. It can be
// killed and started again on the same port (outage tests). `make test` installs redis-server.
import fs from 'node:fs';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './net.ts';
import { tempDir } from './tmp.ts';

export interface TestRedisOptions {
  password?: string;
  /** TLS only (no plaintext port): server certificate, key and the CA clients verify it with;
   *  authClients: clients must present a certificate of that CA (Redis's own default) */
  tls?: { cert: string; key: string; ca: string; authClients?: boolean };
}

export { freePort };

export class TestRedis {
  proc: ChildProcess | null = null;
  log = '';
  private constructor(readonly port: number, readonly dir: string, readonly opts: TestRedisOptions) {}

  /** redis:// or rediss:// URL, with the password when there is one. */
  get url(): string {
    const auth = this.opts.password ? `:${encodeURIComponent(this.opts.password)}@` : '';
    return `${this.opts.tls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${this.port}`;
  }

  static async start(opts: TestRedisOptions = {}): Promise<TestRedis> {
    const dir = tempDir('redis');
    for (let attempt = 0; ; attempt++) {
      const r = new TestRedis(await freePort(), dir, opts);
      try {
        await r.launch();
        return r;
      } catch (err) {
        if (attempt >= 3) throw err; // the free port was taken in between: try another
      }
    }
  }

  /** On a given port (e.g. one a node already points at). */
  static async startOn(port: number, opts: TestRedisOptions = {}): Promise<TestRedis> {
    const r = new TestRedis(port, tempDir('redis'), opts);
    await r.launch();
    return r;
  }

  private args(): string[] {
    const a = ['--save', '', '--appendonly', 'no', '--dir', this.dir, '--bind', '127.0.0.1', '--protected-mode', 'no'];
    if (this.opts.tls) {
      a.unshift('--port', '0', '--tls-port', String(this.port), '--tls-cert-file', this.opts.tls.cert,
        '--tls-key-file', this.opts.tls.key, '--tls-ca-cert-file', this.opts.tls.ca, '--tls-auth-clients', this.opts.tls.authClients ? 'yes' : 'no');
    } else {
      a.unshift('--port', String(this.port));
    }
    if (this.opts.password) a.push('--requirepass', this.opts.password);
    return a;
  }

  private launch(): Promise<void> {
    const proc = spawn('redis-server', this.args(), { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`redis-server did not start: ${this.log}`)); }, 10000);
      const onData = (d: Buffer): void => {
        this.log += d.toString();
        if (this.log.includes('Ready to accept connections')) { clearTimeout(timer); resolve(); }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('error', (err) => { clearTimeout(timer); reject(err); });
      proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`redis-server exited (${code}): ${this.log}`)); });
    });
  }

  /** Stop the server at once (SIGKILL: no goodbye to the clients, like a crash or a cut cable). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    // SIGCONT first: a paused server (pause()) would hold a SIGTERM until continued
    await new Promise<void>((r) => { p.once('exit', () => r()); p.kill('SIGCONT'); p.kill(signal); });
  }

  /** Freeze the server (SIGSTOP): connections stay open and nothing is answered, as with a hung
   * Redis or a host that lost power or network (no FIN, no RST). */
  pause(): void { this.proc!.kill('SIGSTOP'); }

  resume(): void { this.proc!.kill('SIGCONT'); }

  /** Start again on the same port (and the same password / TLS). */
  async restart(): Promise<void> {
    await this.kill();
    this.log = '';
    const deadline = Date.now() + 10000;
    for (;;) {
      try {
        await this.launch();
        return;
      } catch (err) {
        // the old socket may linger a moment; anything else is a real failure
        if (Date.now() > deadline || !/Address already in use/.test(this.log)) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
