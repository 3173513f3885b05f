// Temp dirs of the tests, removed when the test process exits however the test ended: each
// `make test` otherwise left a few dozen dirs in /tmp, CA and client private keys among them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const made = new Set<string>();

/** A fresh dir `$TMPDIR/cotstream-NAME-XXXXXX`, removed at exit (a test may remove it sooner). */
export function tempDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cotstream-${name}-`));
  if (made.size === 0) process.once('exit', removeAll);
  made.add(dir);
  return dir;
}

function removeAll(): void {
  for (const dir of made) {
    try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* a child may still hold it: left */ }
  }
}
