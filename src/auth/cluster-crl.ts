// The revocation list a Redis cluster shares (bus/crl-share.ts), as one node holds it: the newest
// CA-signed CRL it has seen, verified against its own CA, enforced beside its --crl file
// (RevocationList.setCluster), and kept on disk so that a node restarted while Redis is away, or
// after Redis lost its data, still refuses what was revoked (and offers the list to Redis again).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { verifyCrl, type ParsedCrl } from './crl-x509.ts';
import type { RevocationList, RevokedEntry } from './revocation.ts';
import { pemToDer } from './revocation-file.ts';
import { PUBLIC_MODE, writeFileAtomic } from '../pki/files.ts';
import type { CrlShare } from '../bus/crl-share.ts';
import type { Metrics } from '../ops/metrics.ts';

export interface ClusterCrlOptions {
  /** the CA certificate(s) a list must be signed by (read at each offer: a reloaded CA counts) */
  ca: string;
  /** where the newest list is kept (PEM) */
  file: string;
  list: RevocationList;
  log: Logger;
  metrics: Metrics;
}

export class ClusterCrl implements CrlShare {
  private readonly o: ClusterCrlOptions;
  private readonly log: Logger;
  private held: { der: Buffer; at: number } | undefined;
  /** digest of the last list refused: a bad list read again at every notice is logged once */
  private refused = '';
  private warnedWrite = false;

  constructor(o: ClusterCrlOptions) {
    this.o = o;
    this.log = o.log.child({ audit: 'revocation', source: 'cluster' });
  }

  /** The list kept on disk by an earlier run, if it is still one our CA signed. */
  load(): void {
    let raw: Buffer;
    try {
      raw = fs.readFileSync(this.o.file);
    } catch {
      return; // none kept yet
    }
    const der = raw[0] === 0x30 ? raw : pemToDer(raw.toString('latin1'));
    if (this.offer(der, this.o.file) === 'rejected') this.log.error({ file: this.o.file }, 'the kept cluster revocation list is not one our CA signed: ignored (the one in Redis is fetched once the bus is up)');
  }

  newest(): { der: Buffer; at: number } | undefined {
    return this.held;
  }

  offer(der: Buffer, from: string): 'applied' | 'same' | 'older' | 'rejected' {
    let crl: ParsedCrl;
    try {
      crl = verifyCrl(der, fs.readFileSync(this.o.ca, 'utf8'));
    } catch (err) {
      const digest = createHash('sha256').update(der).digest('hex');
      if (digest !== this.refused) {
        this.refused = digest;
        this.o.metrics.crlClusterRejected.inc();
        this.log.warn({ from, err: (err as Error).message, bytes: der.length }, 'revocation list offered through Redis refused: not a CRL our CA signed (the list in force stays)');
      }
      return 'rejected';
    }
    const at = crl.thisUpdate.getTime();
    const held = this.held;
    if (held !== undefined) {
      if (at < held.at) return 'older';
      if (at === held.at) {
        if (held.der.equals(der)) return 'same';
        // two lists signed in the same second: Redis's copy wins, so every node converges on it
        if (from !== 'redis') return 'older';
      }
    }
    this.held = { der: Buffer.from(der), at };
    const entries = new Map<string, RevokedEntry>();
    for (const e of crl.entries) if (!entries.has(e.serial)) entries.set(e.serial, { serial: e.serial, reason: e.reason, date: e.date.toISOString() });
    // said before the sessions it revokes are closed (their `revoked` lines follow)
    this.log.info({ from, this_update: crl.thisUpdate.toISOString(), revoked: entries.size }, 'cluster revocation list in force');
    this.o.list.setCluster(entries);
    this.o.metrics.crlCluster.set(Math.floor(at / 1000));
    this.o.metrics.revokedSerials.set(this.o.list.size);
    if (from !== this.o.file) this.keep(der);
    return 'applied';
  }

  private keep(der: Buffer): void {
    const b64 = der.toString('base64').match(/.{1,64}/g)!.join('\n');
    try {
      writeFileAtomic(this.o.file, `-----BEGIN X509 CRL-----\n${b64}\n-----END X509 CRL-----\n`, PUBLIC_MODE);
    } catch (err) {
      if (!this.warnedWrite) {
        this.warnedWrite = true;
        this.log.warn({ file: this.o.file, err: (err as Error).message }, 'cannot keep the cluster revocation list on disk: enforced now, but a restart without Redis would not know it');
      }
    }
  }
}
