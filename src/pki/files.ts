import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate, randomBytes } from 'node:crypto';

/** Mode for anything holding a private key or a password (keys, PKCS#12, data packages). */
export const SECRET_MODE = 0o600;
/** Mode for public material (certificates, CRLs). */
export const PUBLIC_MODE = 0o644;
/** directories the PKI commands create: readable by the server's account, writable by the owner only */
export const DIR_MODE = 0o755;

/** A CA file as TLS takes it: PEM as it is; one DER certificate (what Windows exports as .cer)
 *  turned into PEM — Node's TLS `ca` option reads PEM only, and would silently trust nobody. */
export function caPem(file: Buffer): Buffer {
  if (file.includes('-----BEGIN')) return file;
  try {
    return Buffer.from(new X509Certificate(file).toString());
  } catch {
    return file;
  }
}

export class FileExistsError extends Error {
  constructor(readonly files: string[]) {
    super(`refusing to overwrite existing file${files.length > 1 ? 's' : ''}: ${files.join(', ')} (use --force)`);
    this.name = 'FileExistsError';
  }
}

/** Throws FileExistsError naming every file that exists, unless force. */
export function assertNoneExist(files: string[], force: boolean | undefined): void {
  if (force) return;
  const existing = files.filter((f) => fs.existsSync(f));
  if (existing.length) throw new FileExistsError(existing);
}

/**
 * Write a file atomically (temp file + rename) with an exact mode: readers — the revocation
 * watcher in particular — never see a half-written file, and a secret never exists with a wider
 * mode, even for an instant, even when overwriting (writeFile keeps an existing file's mode).
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode: number): void {
  const dir = path.dirname(file);
  // a directory made on the way is never writable by others, whatever the umask (start refuses
  // trust files in one: they could be replaced there)
  fs.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, data, { mode, flag: 'wx' });
    fs.chmodSync(tmp, mode); // the umask may have narrowed it; make it exact
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Refuse a private key that other users can read or write: the server's at start and reload, the
 * CA's when `certs` signs with it; the error names the file and the fix. (Group access is left to
 * the operator: Debian's ssl-cert group convention relies on it.)
 */
export function assertKeyPrivate(file: string): void {
  if (process.platform === 'win32') return; // no POSIX modes to check
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    throw new Error(`private key ${file} cannot be read: ${(err as Error).message}`);
  }
  if (st.mode & 0o007) {
    const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
    throw new Error(
      `private key ${file} is accessible by other users (mode ${mode}); refusing to use it. Fix: chmod 600 ${file}`,
    );
  }
}

/**
 * Refuse a file that decides whom the server trusts (the CA, the revocation list, the server's
 * key) when other users can change it, or replace it through its directory: a local user who can
 * write it chooses who connects. A sticky directory (/tmp) lets nobody replace another's file.
 * A missing file is not checked (its directory is).
 */
export function assertNotOthersWritable(file: string, what: string): void {
  if (process.platform === 'win32') return;
  // a symbolic link is judged by what it points at: the file that is read, and the directory in
  // which it could be replaced (the link's own directory too: the link could be replaced there)
  let real = file;
  try {
    real = fs.realpathSync(file);
  } catch {
    /* missing: its directory is checked */
  }
  const places: Array<[string, boolean]> = [[real, false], [path.dirname(real), true]];
  if (real !== file) places.push([path.dirname(file), true]);
  for (const [f, isDir] of places) {
    let st: fs.Stats;
    try {
      st = fs.statSync(f);
    } catch {
      continue;
    }
    if ((st.mode & 0o002) === 0 || (isDir && (st.mode & 0o1000) !== 0)) continue;
    const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
    throw new Error(
      `other users can ${isDir ? `replace the ${what} ${file}: its directory ${f}` : `change the ${what} ${f}: it`} is writable by all (mode ${mode}); refusing to use it. Fix: chmod o-w ${f}`,
    );
  }
}

/** notAfter of the first certificate in a PEM file. */
export function certificateExpiry(pemPath: string): Date {
  const cert = new X509Certificate(fs.readFileSync(pemPath));
  return new Date(cert.validTo);
}
