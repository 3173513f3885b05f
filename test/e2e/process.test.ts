// The real `cotstream start` process: starts, serves, stops cleanly on SIGTERM/SIGINT, refuses bad setups.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { spawnServer, ROOT } from '../helpers/server.ts';
import { CotClient, sa, ping } from '../helpers/client.ts';

describe('e2e: cotstream start as a process', function () {
  this.timeout(30000);
  let pki: SharedPki;
  before(async () => { pki = await testPki(); });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`stops cleanly on ${signal}: closes sessions, exits 0`, async () => {
      const srv = await spawnServer(['--certs-dir', pki.dir]);
      const a = await CotClient.connect(srv.port, await pki.client('alpha'));
      const b = await CotClient.connect(srv.port, await pki.client('bravo'));
      a.send(sa('proc-a', 'PA'));
      await b.waitFor((f) => f.some((x) => x.includes('proc-a')));
      a.send(ping());
      await a.waitFor((f) => f.some((x) => x.includes('t-x-c-t-r')));
      const code = await srv.stop(signal);
      assert.equal(code, 0, srv.stderr);
      await a.waitClosed();
      await b.waitClosed();
      assert.ok(srv.lines.some((l) => l.audit === 'stopped'));
      assert.equal(srv.lines.filter((l) => l.audit === 'closed' && l.reason === 'shutdown').length, 2);
    });
  }

  it('refuses to start with a private key other users can read, naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cotstream-badkey-'));
    for (const f of ['ca.pem', 'server.pem', 'server.key']) copyFileSync(join(pki.dir, f), join(dir, f));
    chmodSync(join(dir, 'server.key'), 0o644);
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', dir, '--port', '0', '--metrics-port', 'off'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`${join(dir, 'server.key').replace(/[.]/g, '\\.')}.*chmod 600`));
  });

  it('refuses to start without certificates and says how to make them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cotstream-nocerts-'));
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--certs-dir', dir, '--port', '0', '--metrics-port', 'off'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cotstream certs init/);
  });

  it('rejects a bad option value with a clear message and exit code 2', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'start', '--idle-timeout', 'soon'], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--idle-timeout: expected milliseconds/);
  });
});
