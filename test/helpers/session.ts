// A real Session over an in-memory stream that records each write the session makes (one call per
// write or corked writev) and lets a test push bytes as if the client sent them. For tests of the
// session's own behaviour (write coalescing, error containment); delivery over real TLS is what
// the e2e tests cover.
import { Duplex, Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { FlushScheduler, Session, type SessionHost } from '../../src/session.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { createLogger, type Logger } from '../../src/ops/log.ts';

export class WriteRecorder extends Duplex {
  readonly writes: Array<{ events: number; at: number }> = [];
  /** @param writeCostMs each write holds the thread this long, as a write to a slow socket would */
  constructor(private readonly writeCostMs = 0) { super(); }
  override _read(): void {}
  override _write(_chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.cost();
    this.writes.push({ events: 1, at: performance.now() });
    cb();
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: () => void): void {
    this.cost();
    this.writes.push({ events: chunks.length, at: performance.now() });
    cb();
  }
  private cost(): void {
    const until = performance.now() + this.writeCostMs;
    while (performance.now() < until);
  }
}

/** a logger whose JSON lines land in `lines` */
export function capturedLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const dest = new Writable({ write(chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  return { log: createLogger('info', dest), lines };
}

export const NO_LIMITS = { maxFrameBytes: 1 << 20, maxSendBuffer: 1 << 22, slowConsumerTimeout: 0, idleTimeout: 0, rateEvents: 0, rateBurst: 0, rateBytes: 0 };

export function memSession(
  sched: FlushScheduler,
  m: Metrics,
  host: SessionHost = { onFrame: () => {}, onClose: () => {} },
  log: Logger = createLogger('silent'),
  rec: WriteRecorder = new WriteRecorder(),
): { s: Session; rec: WriteRecorder } {
  const id = { cn: 'alpha', serial: '1', fingerprint: '', remote: '127.0.0.1:1', plaintext: false };
  return { s: new Session(rec, id, host, NO_LIMITS, m, sched, log), rec };
}
