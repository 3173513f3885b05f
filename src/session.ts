// One connected client: its framer, identity, rate limit, idle timer and a bounded writer.
// Everything per-event is a method call on this object: no closures are made per event.
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { Framer, type FramerSink, type FrameRejectReason } from '../protocol/framer.ts';
import { scan, type CotHeader } from '../protocol/scan.ts';
import type { ClientIdentity } from './auth/identity.ts';
import type { Metrics } from './ops/metrics.ts';
import type { Logger } from './ops/log.ts';

export interface SessionLimits {
  maxFrameBytes: number;
  maxSendBuffer: number;
  slowConsumerTimeout: number;
  idleTimeout: number;
  rateEvents: number;
  rateBurst: number;
  rateBytes: number;
}

/** What a session needs from the router: a frame arrived, the session closed. */
export interface SessionHost {
  onFrame(s: Session, frame: Buffer, h: CotHeader, t0: number): void;
  onClose(s: Session, reason: string): void;
}

export const CloseReason = {
  client: 'client', idle: 'idle', slow_consumer: 'slow_consumer', revoked: 'revoked', shutdown: 'shutdown', error: 'error', protocol: 'protocol',
} as const;
export type CloseReason = keyof typeof CloseReason;

/**
 * Coalesces writes: sessions that got data during this turn of the event loop are flushed once,
 * together, in a setImmediate — one TLS write per session per tick however many events it got.
 */
export class FlushScheduler {
  private dirty: Session[] = [];
  private scheduled = false;
  /** receive times of the events delivered this tick (observed once each, after the writes) */
  private t0s: number[] = [];
  private readonly run = (): void => this.flush();
  constructor(private readonly metrics: Metrics) {}

  mark(s: Session): void {
    this.dirty.push(s);
    if (!this.scheduled) { this.scheduled = true; setImmediate(this.run); }
  }

  delivered(t0: number): void {
    this.t0s.push(t0);
    if (!this.scheduled) { this.scheduled = true; setImmediate(this.run); }
  }

  flush(): void {
    this.scheduled = false;
    const d = this.dirty;
    for (let i = 0; i < d.length; i++) d[i].flush();
    d.length = 0;
    const t0s = this.t0s;
    if (t0s.length > 0) {
      const now = performance.now();
      for (let i = 0; i < t0s.length; i++) this.metrics.latency.observe((now - t0s[i]) / 1000);
      t0s.length = 0;
    }
  }
}

let nextId = 1;

export class Session implements FramerSink {
  readonly id = nextId++;
  readonly connectedAt = Date.now();
  /** set by the router from the first event with contact@endpoint */
  uid = '';
  callsign = '';
  /** type of the latest SA (for the disconnect notice) */
  saType = '';
  closed = false;
  closeReason = '';
  eventsIn = 0;
  eventsOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  dropped = 0;
  /** the router may attach per-session state here */
  wantsAnnouncement = true;
  /** callsign changes so far (the router logs only the first few) */
  renames = 0;
  /** the router logged this client's first uid conflict */
  loggedConflict = false;

  private readonly framer: Framer;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private dirty = false;
  private t0 = 0;
  private chunkEvents = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private slowTimer: NodeJS.Timeout | null = null;
  private slowDropped = 0;
  private rateDropped = 0;
  private evTokens: number;
  private byteTokens: number;
  private lastRefill = performance.now();
  private readonly loggedReject = new Set<string>();
  readonly log: Logger;

  constructor(
    readonly socket: Duplex & { setNoDelay?: (b: boolean) => unknown; writableLength: number },
    readonly identity: ClientIdentity,
    private readonly host: SessionHost,
    private readonly limits: SessionLimits,
    private readonly metrics: Metrics,
    private readonly flusher: FlushScheduler,
    log: Logger,
  ) {
    this.log = log.child({ sid: this.id, cn: identity.cn, serial: identity.serial, remote: identity.remote });
    this.framer = new Framer(this, limits.maxFrameBytes);
    this.evTokens = limits.rateBurst;
    this.byteTokens = limits.rateBytes * 5;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onSocketClose);
    socket.on('error', this.onError);
    socket.on('drain', this.onDrain);
    if (limits.idleTimeout > 0) {
      this.idleTimer = setTimeout(this.onIdle, limits.idleTimeout);
      this.idleTimer.unref();
    }
  }

  // ---- receive path -------------------------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    if (this.closed) return;
    this.t0 = performance.now();
    this.bytesIn += chunk.length;
    this.metrics.bytesReceived.inc(chunk.length);
    this.idleTimer?.refresh();
    this.chunkEvents = 0;
    const skippedBefore = this.framer.skippedBytes;
    this.framer.push(chunk);
    if (this.chunkEvents > 0) this.metrics.eventsReceived.inc(this.chunkEvents);
    const junk = this.framer.skippedBytes - skippedBefore;
    if (junk > 0) this.metrics.junkBytes.inc(junk);
  };

  /** FramerSink: one complete event. */
  frame(frame: Buffer): void {
    if (this.closed) return;
    this.eventsIn++;
    this.chunkEvents++;
    const h = scan(frame);
    if (!h.ok) {
      this.metrics.drop.malformed.inc();
      this.dropped++;
      this.logOnce('malformed', { reason: h.reason, offset: h.offset });
      return;
    }
    if (!this.takeTokens(frame.length)) return;
    this.host.onFrame(this, frame, h, this.t0);
  }

  /** FramerSink: a frame discarded by the framer (oversize, DOCTYPE …). */
  reject(reason: FrameRejectReason, detail: string): void {
    this.dropped++;
    this.metrics.drop[reason].inc();
    this.logOnce(reason, { detail });
  }

  private logOnce(kind: string, extra: Record<string, unknown>): void {
    if (this.loggedReject.has(kind)) return;
    this.loggedReject.add(kind);
    this.log.warn({ audit: 'bad_input', kind, ...extra }, `dropped ${kind} input from client (further ones are only counted)`);
  }

  /** Token buckets on events/s and bytes/s; 0 disables a bucket. */
  private takeTokens(bytes: number): boolean {
    const l = this.limits;
    if (l.rateEvents === 0 && l.rateBytes === 0) return true;
    const now = this.t0;
    const dt = (now - this.lastRefill) / 1000;
    this.lastRefill = now;
    if (l.rateEvents > 0) this.evTokens = Math.min(l.rateBurst, this.evTokens + dt * l.rateEvents);
    if (l.rateBytes > 0) this.byteTokens = Math.min(l.rateBytes * 5, this.byteTokens + dt * l.rateBytes);
    const evOk = l.rateEvents === 0 || this.evTokens >= 1;
    const byOk = l.rateBytes === 0 || this.byteTokens >= bytes;
    if (evOk && byOk) {
      if (l.rateEvents > 0) this.evTokens -= 1;
      if (l.rateBytes > 0) this.byteTokens -= bytes;
      if (this.rateDropped > 0) {
        this.log.info({ audit: 'rate_limit_end', dropped: this.rateDropped }, 'client back under its rate limit');
        this.rateDropped = 0;
      }
      return true;
    }
    if (this.rateDropped === 0) {
      this.log.warn({ audit: 'rate_limit', rateEvents: l.rateEvents, rateBytes: l.rateBytes }, 'client over its rate limit: dropping its excess events');
    }
    this.rateDropped++;
    this.dropped++;
    this.metrics.drop.rate_limit.inc();
    return false;
  }

  // ---- send path ----------------------------------------------------------------------------

  /**
   * Queue one event for this client. The Buffer is shared with other recipients and must not be
   * modified. Returns false when dropped because the client is not reading fast enough.
   */
  send(buf: Buffer): boolean {
    if (this.closed) return false;
    if (this.socket.writableLength + this.queuedBytes + buf.length > this.limits.maxSendBuffer) {
      this.slowDrop();
      return false;
    }
    this.queue.push(buf);
    this.queuedBytes += buf.length;
    if (!this.dirty) { this.dirty = true; this.flusher.mark(this); }
    return true;
  }

  /** Write everything queued this tick in one go (called by the FlushScheduler). */
  flush(): void {
    this.dirty = false;
    const q = this.queue;
    const n = q.length;
    if (n === 0 || this.closed) { q.length = 0; this.queuedBytes = 0; return; }
    if (n === 1) this.socket.write(q[0]);
    else {
      // One write of one buffer: TLS then encrypts the batch as few records, one syscall.
      this.socket.write(Buffer.concat(q, this.queuedBytes));
    }
    this.eventsOut += n;
    this.bytesOut += this.queuedBytes;
    this.metrics.eventsDelivered.inc(n);
    this.metrics.bytesSent.inc(this.queuedBytes);
    q.length = 0;
    this.queuedBytes = 0;
  }

  private slowDrop(): void {
    this.dropped++;
    this.metrics.drop.slow_consumer.inc();
    if (this.slowDropped++ === 0) {
      this.log.warn({ audit: 'slow_consumer', queued: this.socket.writableLength, limit: this.limits.maxSendBuffer }, 'client not reading: dropping events for it');
      if (this.limits.slowConsumerTimeout > 0) {
        if (this.slowTimer) this.slowTimer.refresh();
        else { this.slowTimer = setTimeout(this.onSlowTimeout, this.limits.slowConsumerTimeout); this.slowTimer.unref(); }
      }
    }
  }

  private readonly onDrain = (): void => {
    if (this.slowDropped > 0) {
      this.log.info({ audit: 'slow_consumer_end', dropped: this.slowDropped }, 'client reading again');
      this.slowDropped = 0;
      if (this.slowTimer) { clearTimeout(this.slowTimer); this.slowTimer = null; }
    }
  };

  private readonly onSlowTimeout = (): void => {
    this.slowTimer = null;
    if (this.slowDropped > 0) this.close('slow_consumer');
  };

  // ---- lifecycle ----------------------------------------------------------------------------

  private readonly onIdle = (): void => this.close('idle');
  private readonly onEnd = (): void => this.close('client');
  private readonly onSocketClose = (): void => this.close('client');
  private readonly onError = (err: Error): void => {
    if (!this.closed) this.log.debug({ err: err.message }, 'socket error');
    this.close('error');
  };

  /** Idempotent: clears every timer and listener, destroys the socket, tells the router once. */
  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    if (this.idleTimer) { clearTimeout(this.idleTimer); this.idleTimer = null; }
    if (this.slowTimer) { clearTimeout(this.slowTimer); this.slowTimer = null; }
    this.queue.length = 0;
    this.queuedBytes = 0;
    const s = this.socket;
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('drain', this.onDrain);
    // keep an error listener: a late error on a destroyed socket must not crash the process
    s.off('close', this.onSocketClose);
    if (reason === 'shutdown' || reason === 'client') s.end();
    s.destroy();
    this.host.onClose(this, reason);
  }
}
