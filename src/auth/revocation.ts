// The live revocation list the server checks at every handshake. Fail safe, never fail closed:
//  - missing file   → nothing revoked (logged) while no list was ever read from it; once one was,
//                     a file that disappears keeps that list in force (logged as an error): a
//                     deleted or unmounted file must not quietly let every revoked phone back in;
//  - corrupt file   → the last good list stays in force (logged as an error, 'error' emitted);
//                     at the first load there is no good list, so load() throws and the server
//                     refuses to start rather than run with an unknown list;
//  - next_update in the past → a warning; revocations stay enforced and nobody is locked out.
// Events: 'change' ({added, removed}) when the revoked set changed; 'reload' after every good
// read (dates may change without the set); 'error' for a rejected file (only if listened to).
// With Redis scale-out a second source joins the file: the CA-signed list the cluster shares
// (setCluster, from ClusterCrl). A serial either revokes is refused; the file never loses an entry
// because the cluster's list lacks it.
// watch() reloads within a second of a change: fs.watch on the directory (editors and our own
// writer replace the file by rename, which a watch on the file itself would miss) plus a stat poll
// for filesystems where fs.watch says nothing (NFS, some containers).
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { parseRevocationFile, signedCopyOf, type RevokedEntry, type RevocationFormat } from './revocation-file.ts';
import { canonicalSerial } from './serial.ts';

export type { RevokedEntry } from './revocation-file.ts';

export interface RevocationChange {
  /** Serials revoked by this reload (canonical hex). */
  added: string[];
  /** Serials no longer revoked. */
  removed: string[];
}

export interface RevocationListOptions {
  path: string;
  log: Logger;
  /** Stat poll interval for watch(); default 500 ms. */
  pollMs?: number;
  /** Quiet time after a watch event before re-reading (writers finishing); default 30 ms. */
  debounceMs?: number;
  /**
   * The signed copy every `revoke` writes beside the list (<certs-dir>/crl.pem): enforced when the
   * list file is missing before any list was read, so a lost crl.json plus a restart does not
   * quietly let every revoked device back in.
   */
  signedCopy?: string;
}

export class RevocationList extends EventEmitter {
  readonly path: string;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly debounceMs: number;
  private readonly signedCopy: string | undefined;
  private entries = new Map<string, RevokedEntry>();
  /** the cluster's signed list (setCluster): enforced besides the file's entries */
  private cluster = new Map<string, RevokedEntry>();
  private inForceSize = 0;
  private next: Date | undefined;
  private fmt: RevocationFormat | undefined;
  private haveGood = false;
  private lastRaw: Buffer | undefined;
  private lastBad: Buffer | undefined;
  private missing = false;
  /** the last read failed without bytes to remember (EACCES, EISDIR…) */
  private badRead = false;
  private statKey = '';
  private watcher: fs.FSWatcher | undefined;
  private poller: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(opts: RevocationListOptions) {
    super();
    this.path = path.resolve(opts.path);
    this.log = opts.log.child({ crl: this.path });
    this.pollMs = opts.pollMs ?? 500;
    this.debounceMs = opts.debounceMs ?? 30;
    this.signedCopy = opts.signedCopy;
  }

  /** Serials in force: the file's and the cluster list's, each counted once. */
  get size(): number {
    return this.inForceSize;
  }

  get nextUpdate(): Date | undefined {
    return this.next;
  }

  /** Format of the file in force ('json' | 'pem' | 'der'), undefined while none was read. */
  get format(): RevocationFormat | undefined {
    return this.fmt;
  }

  /** True when next_update has passed (warned about; revocations stay enforced). */
  get expired(): boolean {
    return this.next !== undefined && this.next.getTime() < Date.now();
  }

  /**
   * False while the list in force is not what the file says: the file is corrupt or unreadable
   * (the last good list stays), or gone after a list was read (that list, or the signed copy,
   * stays). A missing file before any list was read is a fresh install: fine.
   */
  get fileOk(): boolean {
    return this.lastBad === undefined && !this.badRead && !(this.missing && this.lastRaw !== undefined);
  }

  lookup(serialHex: string): RevokedEntry | undefined {
    return this.entries.get(serialHex) ?? this.cluster.get(serialHex);
  }

  /** lookup() for a serial in any accepted spelling (e.g. Node's upper-case peer serial). */
  lookupAny(serial: string): RevokedEntry | undefined {
    try {
      return this.lookup(canonicalSerial(serial));
    } catch {
      return undefined;
    }
  }

  /** The file's entries, then the cluster list's that the file does not hold. */
  entriesList(): RevokedEntry[] {
    return [...this.entries.values(), ...[...this.cluster.values()].filter((e) => !this.entries.has(e.serial))];
  }

  /**
   * Put the cluster's signed list in force beside the file's (ClusterCrl, a newer list from the
   * bus). Emits 'change' with what it adds to or removes from the serials in force. True when
   * that changed.
   */
  setCluster(next: Map<string, RevokedEntry>): boolean {
    return this.swap(() => { this.cluster = next; });
  }

  /** Initial synchronous load. Throws only when the file exists but is unreadable/corrupt. */
  load(): void {
    this.reload();
  }

  /**
   * Re-read the file now (watch events, SIGHUP). Returns true when the revoked set changed.
   * Never throws once a good list is in force.
   */
  reload(): boolean {
    let raw: Buffer;
    try {
      raw = fs.readFileSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.gone();
      return this.fail(err as Error, undefined);
    }
    const wasBroken = !this.fileOk;
    if (this.missing && this.lastRaw) this.log.info({ revoked: this.entries.size }, 'revocation list file is back');
    this.missing = false;
    this.badRead = false;
    if (this.lastRaw?.equals(raw)) {
      // the list in force, back as it was (restored after a deletion or a bad edit)
      if (wasBroken) { this.lastBad = undefined; this.emit('reload'); }
      return false;
    }
    if (this.lastBad?.equals(raw)) return false; // already reported
    let parsed;
    try {
      parsed = parseRevocationFile(raw);
    } catch (err) {
      return this.fail(err as Error, raw);
    }
    this.lastRaw = raw;
    this.lastBad = undefined;
    this.haveGood = true;
    this.fmt = parsed.format;
    const changed = this.replace(parsed.entries, parsed.nextUpdate);
    this.emit('reload');
    this.log.info({ revoked: this.entries.size, format: parsed.format, next_update: parsed.nextUpdate?.toISOString() }, 'revocation list loaded');
    for (const w of parsed.warnings ?? []) this.log.warn({}, `revocation list: ${w}`);
    if (this.expired) {
      this.log.warn(
        { next_update: this.next!.toISOString() },
        'revocation list next_update has passed: still enforced, nobody is locked out; `cotstream crl refresh` (or any revoke) renews it',
      );
    }
    return changed;
  }

  /**
   * The file is not there. Before any list was read from it (a fresh install) that means nothing
   * is revoked. After one was, the last list stays in force: a deleted file, an unmounted volume
   * or a half-done deploy must not let a revoked (perhaps stolen) device back in. To clear every
   * revocation, write an empty list (`{"revoked": []}`) — or restart without the file.
   */
  private gone(): boolean {
    if (this.lastRaw) {
      if (this.missing) return false;
      this.missing = true;
      this.log[this.entries.size > 0 ? 'error' : 'warn'](
        { revoked: this.entries.size },
        'revocation list file is gone: the last list stays in force (write {"revoked": []} to clear it)',
      );
      if (this.listenerCount('error') > 0) this.emit('error', new Error(`${this.path} is gone`));
      return false;
    }
    // nothing read yet: the signed copy, if there is one by now (a revoke whose crl.json vanished
    // before we read it leaves it; a SIGHUP or the next change looks again)
    let copy;
    try {
      copy = signedCopyOf(this.path, this.signedCopy);
    } catch (err) {
      this.missing = true;
      return this.fail(err as Error, undefined);
    }
    const wasMissing = this.missing;
    this.missing = true;
    if (copy) {
      this.log.error(
        { revoked: copy.entries.size, signedCopy: this.signedCopy },
        'revocation list file not found: enforcing the signed copy that `revoke` wrote beside it; restore the file, or `cotstream crl refresh` rewrites it from the copy',
      );
      this.lastRaw = fs.readFileSync(this.signedCopy!);
      this.haveGood = true;
      this.fmt = copy.format;
      const changed = this.replace(copy.entries, copy.nextUpdate);
      this.emit('reload');
      return changed;
    }
    if (wasMissing) return false;
    this.log.warn({ revoked: 0 }, 'revocation list file not found: nothing is revoked');
    this.haveGood = true;
    this.fmt = undefined;
    const changed = this.replace(new Map(), undefined);
    this.emit('reload');
    return changed;
  }

  private fail(err: Error, raw: Buffer | undefined): boolean {
    if (!this.haveGood) {
      throw new Error(`revocation list ${this.path} cannot be used: ${err.message}`);
    }
    this.lastBad = raw;
    this.badRead = raw === undefined;
    this.log.error(
      { err: err.message, revoked: this.entries.size },
      'revocation list unreadable or corrupt: the last good list stays in force',
    );
    if (this.listenerCount('error') > 0) this.emit('error', err);
    return false;
  }

  private replace(next: Map<string, RevokedEntry>, nextUpdate: Date | undefined): boolean {
    this.next = nextUpdate;
    return this.swap(() => { this.entries = next; });
  }

  /** Change a source, then say what that changed of the serials in force (rare: no hot path). */
  private swap(change: () => void): boolean {
    const before = this.inForce();
    change();
    const after = this.inForce();
    this.inForceSize = after.size;
    const added = [...after].filter((k) => !before.has(k));
    const removed = [...before].filter((k) => !after.has(k));
    if (!added.length && !removed.length) return false;
    this.emit('change', { added, removed } satisfies RevocationChange);
    return true;
  }

  private inForce(): Set<string> {
    const s = new Set(this.entries.keys());
    for (const k of this.cluster.keys()) s.add(k);
    return s;
  }

  /** Start reacting to changes of the file. Idempotent. */
  watch(): void {
    if (this.poller) return;
    this.statKey = this.stat();
    try {
      const base = path.basename(this.path);
      this.watcher = fs.watch(path.dirname(this.path), { persistent: false }, (_ev, name) => {
        if (name === null || name === base) this.schedule();
      });
      this.watcher.on('error', (err) => {
        this.log.warn({ err: err.message }, 'watching the revocation list directory failed; polling only');
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      // e.g. the directory does not exist yet: the poll notices when the file appears
      this.log.warn({ err: (err as Error).message }, 'cannot watch the revocation list directory; polling only');
    }
    this.poller = setInterval(() => {
      const k = this.stat();
      if (k !== this.statKey) this.schedule();
    }, this.pollMs);
    this.poller.unref();
  }

  private stat(): string {
    try {
      const s = fs.statSync(this.path, { bigint: true });
      return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
    } catch {
      return 'missing';
    }
  }

  private schedule(delay = this.debounceMs): void {
    if (this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.statKey = this.stat();
      try {
        this.reload();
      } catch (err) {
        // only possible before any good list: keep trying on the next change
        this.log.error({ err: (err as Error).message }, 'revocation list reload failed');
      }
    }, delay);
    this.debounce.unref();
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.poller) clearInterval(this.poller);
    this.poller = undefined;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = undefined;
  }
}
