// One connected client: its framer, identity, rate limit, idle timer and a bounded writer.
// Everything per-event is a method call on this object: no closures are made per event.
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { Framer, type FramerSink, type FrameRejectReason } from '../protocol/framer.ts';
import { scan, ScanReason, type CotHeader } from '../protocol/scan.ts';
import { declaredEncoding, isWestern, windows1252ToUtf8 } from '../protocol/charset.ts';
import { protocolSupport } from '../protocol/control.ts';
import { ProtoFramer } from '../protocol/protoframer.ts';
import type { Envelope } from './bus/types.ts';
import { envelopeProto, frameProto, setInbound, UNCONVERTIBLE } from './wire.ts';
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

// defined with the metric it labels; a session's close() takes one
export { CloseReason } from './ops/metrics.ts';
import type { CloseReason } from './ops/metrics.ts';

/**
 * Coalesces writes: sessions that got data during this turn of the event loop are flushed once,
 * together, in a setImmediate — one TLS write per session per tick however many events it got.
 *
 * And in time (`--write-coalesce`, default 1 ms): a session written less than `coalesceMs` ago
 * waits, with every other such session, on one shared timer until then. An event for a quiet
 * client still leaves at once; under load each client gets one TLS write per interval however its
 * events arrive (several senders, batches from other nodes over the bus) instead of one per tick.
 * The per-write cost (TLS record, syscall) is most of a delivery's CPU (bench/README.md). Added
 * latency: at most about coalesceMs (Node timers tick in whole milliseconds).
 */
export class FlushScheduler {
  private dirty: Session[] = [];
  private later: Session[] = [];
  private scheduled = false;
  private timer: NodeJS.Timeout | null = null;
  /**
   * Receive times of the events delivered, observed once each after the writes (after the deferred
   * ones too, when some are pending). A typed array reused from tick to tick (grown by doubling,
   * never shrunk): no allocation per event or tick.
   */
  private t0s = new Float64Array(1024);
  private nT0 = 0;
  private readonly run = (): void => this.flushNow();
  private readonly runLater = (): void => this.flushLater();
  constructor(private readonly metrics: Metrics, private readonly coalesceMs = 1) {}

  mark(s: Session): void {
    if (this.coalesceMs > 0 && performance.now() - s.lastFlush < this.coalesceMs) {
      this.later.push(s);
      if (this.timer === null) this.timer = setTimeout(this.runLater, this.coalesceMs);
    } else {
      this.dirty.push(s);
      if (!this.scheduled) { this.scheduled = true; setImmediate(this.run); }
    }
  }

  delivered(t0: number): void {
    if (this.nT0 === this.t0s.length) {
      const bigger = new Float64Array(this.t0s.length * 2);
      bigger.set(this.t0s);
      this.t0s = bigger;
    }
    this.t0s[this.nT0++] = t0;
    if (!this.scheduled) { this.scheduled = true; setImmediate(this.run); }
  }

  /** Write everything pending now, deferred sessions included (shutdown, tests). */
  flush(): void {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    this.scheduled = false;
    const now = performance.now();
    this.flushList(this.dirty, now);
    this.flushList(this.later, now);
    this.observe();
  }

  private flushNow(): void {
    this.scheduled = false;
    const now = performance.now();
    this.flushList(this.dirty, now);
    if (this.later.length === 0) this.observe();
  }

  private flushLater(): void {
    this.timer = null;
    const now = performance.now();
    this.flushList(this.later, now);
    // always observed here, so the receive times can never pile up under sustained load (a session
    // still in `dirty` is written in this same turn of the loop, microseconds later)
    this.observe();
  }

  private flushList(d: Session[], now: number): void {
    for (let i = 0; i < d.length; i++) d[i].flush(now);
    d.length = 0;
  }

  /** after the writes: the clock is read again, as a fan-out to hundreds of TLS sockets takes ms */
  private observe(): void {
    const n = this.nT0;
    if (n === 0) return;
    const now = performance.now();
    const t0s = this.t0s;
    for (let i = 0; i < n; i++) this.metrics.latency.observe((now - t0s[i]) / 1000);
    this.nT0 = 0;
  }
}

/**
 * A session's log: the server's logger with the session's fields (sid, cn, serial, remote) put in
 * front of each line's own. Not a pino child: a child serialises its bindings when made (a dozen
 * strings and objects, ~1 KB per connection, held for the connection's life), while a session
 * logs a handful of lines (connect, identify, drops, close), so binding at call time is cheaper.
 */
export class SessionLog {
  constructor(private readonly base: Logger, private readonly s: Session) {}

  private bind(o: object): object {
    const s = this.s;
    return { sid: s.id, cn: s.identity.cn, serial: s.identity.serial, remote: s.identity.remote, ...o };
  }

  debug(o: object, msg: string): void { if (this.base.isLevelEnabled('debug')) this.base.debug(this.bind(o), msg); }
  info(o: object, msg: string): void { this.base.info(this.bind(o), msg); }
  warn(o: object, msg: string): void { this.base.warn(this.bind(o), msg); }
  error(o: object, msg: string): void { this.base.error(this.bind(o), msg); }
}

let nextId = 1;

/** drops closer together than this are one episode: one audit line, however many events */
const EPISODE_GAP_MS = 1000;
/** the bytes/s bucket holds this many seconds of the sustained rate (the byte burst) */
const BYTE_BURST_SECONDS = 5;
/**
 * Reading from a client stops while it sends more than this many times its --rate-bytes, bytes
 * of any kind (events, junk, oversize or malformed frames), after a burst twice the event bucket's.
 * Dropping what is over the limits saves the recipients, not the CPU that read, decrypted and
 * framed it: a client flooding junk or broken frames cost every other client 50-200 ms of delay.
 * Paused, its own TCP connection backs up instead. Above the event byte rate, so that what the
 * bytes/s bucket lets through is never held back by this.
 */
const READ_RATE_FACTOR = 2;
/**
 * After this many bytes read from one client, reading from it waits for the next turn of the event
 * loop, whatever the rates: the runtime reads up to 2 MiB from a socket per turn (32 reads of
 * 64 KiB), and 2 MiB of the costliest input (broken protobuf, runs of '<') is 80-150 ms of CPU
 * during which no other client is served. A yield costs one setImmediate per 64 KiB.
 */
const READ_TURN_BYTES = 64 * 1024;
/**
 * The replay is handed to the socket this much at a time (replay()): the stream's high-water mark,
 * 16 KiB. Small, because every connection gets it: a client that connects, reads nothing and
 * leaves costs the server the encryption of one window, not of the whole cache (measured with a
 * 2-MB cache and one address reconnecting in a loop: 45% of a core at the 4-MiB default bound).
 * And small because the native memory a TLS connection takes for a write stays with it while it
 * is connected: measured with a 300-KB replay, 273 KB more server memory per connection with
 * 256-KiB windows, 82 KB with 64 KiB, 1-24 KB with 16 KiB (README "Performance", Connections).
 */
const REPLAY_WINDOW = 16 * 1024;
/** stands in the replay for the t-x-takp-v announcement that ends it (replay()) */
const ANNOUNCEMENT = Buffer.alloc(0);
/** a valid SA keeps a silent client connected at most this long (a stale time years ahead must
 *  not keep a dead connection forever); ATAK's longest by default is 375 s */
const MAX_SA_HOLD_MS = 15 * 60_000;

export class Session implements FramerSink {
  readonly id = nextId++;
  readonly connectedAt = Date.now();
  /** set by the router from the first event with contact@endpoint */
  uid = '';
  callsign = '';
  /** type of the latest SA (for the disconnect notice) */
  saType = '';
  /** the client deleted itself (a t-x-d-d linking its own uid) and has sent no SA since: it is
   *  out of the replay, and its leaving is not announced a second time */
  departed = false;
  closed = false;
  closeReason = '';
  eventsIn = 0;
  eventsOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  dropped = 0;
  /** callsign changes so far (the router logs only the first few) */
  renames = 0;
  /** t-x-takp-q requests of this client that were refused (only the first is logged) */
  protocolRefusals = 0;
  /** the router logged this client's first uid conflict */
  loggedConflict = false;
  /** the router's stamp while it collects the recipients of one directed event */
  routeMark = 0;

  /** wire format: XML until the client negotiates TAK Protocol v1, then protobuf both ways */
  protobuf = false;

  private readonly framer: Framer;
  /** replaces the XML framer once protobuf is negotiated */
  private protoFramer: ProtoFramer | null = null;
  /** while the XML framer is still inside the push that carried the request: where the request
   *  ended in that chunk (-1: no switch pending) and the skipped-byte count at that point */
  private switchAt = -1;
  private skippedAtSwitch = 0;
  private chunkLen = 0;
  /** every byte the XML framer had been given before the current chunk (a skipped byte-order mark
   *  never reaches it): where in the chunk a t-x-takp-q ended, for useProtobuf */
  private pushedBefore = 0;
  private inXmlPush = false;
  /** the chunk the XML framer is reading (null between chunks): where a declaration before a
   *  frame that is not UTF-8 is looked for (westernFrame) */
  private chunk: Buffer | null = null;
  /** the stream's last declaration seen named ISO-8859-1 / windows-1252 */
  private western = false;
  private westernLogged = false;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  /** the replay still to be queued (replay()), and live events held behind it */
  private replayQ: Buffer[] | null = null;
  private replayAt = 0;
  /** a replayNext is due (flush) */
  private replayNextSet = false;
  private held: Buffer[] | null = null;
  private heldBytes = 0;
  private dirty = false;
  private t0 = 0;
  private chunkEvents = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private slowTimer: NodeJS.Timeout | null = null;
  /** events dropped because this client was over its send buffer / its rate limit */
  slowDrops = 0;
  rateDrops = 0;
  private slowLastDrop = -Infinity;
  private rateLastDrop = -Infinity;
  private evTokens: number;
  private byteTokens: number;
  private lastRefill = performance.now();
  /** bytes this client may still send before reading from it pauses (READ_RATE_FACTOR) */
  private readTokens: number;
  private readRefill = performance.now();
  private readTimer: NodeJS.Timeout | null = null;
  /** when the last read pause ended (or will) */
  private readLastPause = -Infinity;
  /** bytes read since reading last yielded the event loop (READ_TURN_BYTES) */
  private readRun = 0;
  /** reading from the socket is paused (over the read rate, or yielding a turn) */
  readPaused = false;
  /** performance.now() when reading last resumed after a read-rate pause */
  private readResumedAt = -Infinity;
  /** times and total milliseconds reading from this client was paused */
  readPauses = 0;
  readPausedMs = 0;
  /** kinds of bad input already logged for this client (made on the first; most clients never need it) */
  private loggedReject: Set<string> | null = null;
  readonly log: SessionLog;

  constructor(
    readonly socket: Duplex & { setNoDelay?: (b: boolean) => unknown; writableLength: number },
    readonly identity: ClientIdentity,
    private readonly host: SessionHost,
    private readonly limits: SessionLimits,
    private readonly metrics: Metrics,
    private readonly flusher: FlushScheduler,
    log: Logger,
  ) {
    this.log = new SessionLog(log, this);
    this.framer = new Framer(this, limits.maxFrameBytes);
    this.evTokens = limits.rateBurst;
    this.byteTokens = limits.rateBytes * BYTE_BURST_SECONDS;
    this.readTokens = limits.rateBytes * BYTE_BURST_SECONDS * READ_RATE_FACTOR;
    (socket as SessionSocket)[SESSION] = this;
    socket.on('data', socketData);
    socket.on('end', socketEnd);
    socket.on('close', socketClose);
    socket.on('error', socketError);
    socket.on('drain', socketDrain);
    if (limits.idleTimeout > 0) {
      this.idleTimer = setTimeout(idleFired, limits.idleTimeout, this);
      this.idleTimer.unref();
    }
  }

  // ---- receive path -------------------------------------------------------------------------

  /** @internal a chunk from the socket (socketData) */
  onData(chunk: Buffer): void {
    if (this.closed) return;
    this.t0 = performance.now();
    const first = this.bytesIn === 0;
    this.bytesIn += chunk.length;
    this.metrics.bytesReceived.inc(chunk.length);
    // a UTF-8 byte-order mark opening the stream (Windows PowerShell's UTF8 encoding, some .NET
    // writers) is not junk: skipped without the junk warning
    if (first && chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
    this.idleTimer?.refresh();
    this.chunkEvents = 0;
    let junk: number;
    try {
      const pf = this.protoFramer;
      if (pf) {
        const skippedBefore = pf.skippedBytes;
        pf.push(chunk);
        junk = pf.skippedBytes - skippedBefore;
      } else {
        const f = this.framer;
        const skippedBefore = f.skippedBytes;
        this.pushedBefore = f.framedBytes + f.ignoredBytes + f.skippedBytes + f.buffered;
        this.chunkLen = chunk.length;
        this.inXmlPush = true;
        this.chunk = chunk;
        this.framer.push(chunk);
        this.chunk = null;
        this.inXmlPush = false;
        if (this.switchAt < 0) {
          junk = this.framer.skippedBytes - skippedBefore;
          // an XML declaration at the end of this read, before a frame it left unfinished or before
          // nothing yet, is in view only now: westernFrame looks for the frame's own in the read
          // that completes the frame (a writer that sends the declaration and the event apart)
          const held = f.buffered;
          if (held <= chunk.length) {
            const label = declaredEncoding(chunk, chunk.length - held);
            if (label !== undefined) this.western = isWestern(label);
          }
        } else {
          // negotiated inside this chunk: what follows the request is protobuf
          junk = this.skippedAtSwitch - skippedBefore;
          const rest = chunk.subarray(this.switchAt);
          this.switchAt = -1;
          const next = this.protoFramer!;
          if (rest.length > 0) { next.push(rest); junk += next.skippedBytes; }
        }
      }
    } catch (err) {
      this.streamFailed(err);
      return;
    } finally {
      if (this.chunkEvents > 0) this.metrics.eventsReceived.inc(this.chunkEvents);
    }
    if (junk > 0) this.onJunk(junk);
    if (this.protoFramer?.fatal) this.close('protocol');
    else if (!(this.limits.rateBytes > 0 && this.chargeRead(chunk.length)) && (this.readRun += chunk.length) >= READ_TURN_BYTES) {
      this.readRun = 0;
      this.socket.pause();
      this.readPaused = true;
      setImmediate(readResume, this);
    }
  }

  /**
   * Every byte read counts against the read rate; past it, reading stops until it is paid back.
   * Returns true when reading was paused.
   */
  private chargeRead(bytes: number): boolean {
    const rate = this.limits.rateBytes * READ_RATE_FACTOR;
    const now = this.t0;
    this.readTokens = Math.min(this.limits.rateBytes * BYTE_BURST_SECONDS * READ_RATE_FACTOR, this.readTokens + ((now - this.readRefill) / 1000) * rate);
    this.readRefill = now;
    this.readTokens -= bytes;
    if (this.readTokens >= 0 || this.closed) return false;
    const ms = Math.ceil((-this.readTokens / rate) * 1000);
    this.socket.pause();
    this.readPaused = true;
    this.readPauses++;
    this.readPausedMs += ms;
    this.metrics.readThrottled.inc(ms / 1000);
    // one audit line per episode, as for the rate limits
    if (now - this.readLastPause >= EPISODE_GAP_MS) {
      this.log.warn({ audit: 'read_throttle', readRate: rate, bytesIn: this.bytesIn, pausesBefore: this.readPauses - 1 },
        'client sends faster than its read rate (2x --rate-bytes): reading from it paused (counted in cot_read_throttled_seconds_total)');
    }
    this.readLastPause = now + ms; // an episode goes on while pauses follow each other's end closely
    this.readTimer = setTimeout(readResume, ms, this);
    this.readTimer.unref();
    return true;
  }

  /** @internal the read pause is paid back, or the yielded turn is over (readResume) */
  onReadResume(): void {
    this.readTimer = null;
    this.readPaused = false;
    this.readRun = 0;
    if (this.closed) return;
    this.readResumedAt = performance.now(); // its idle time runs from here: the bytes waited on our side
    this.socket.resume();
  }

  /**
   * The framer or scan core threw on this client's bytes. Hostile input is handled without
   * throwing, so this is a bug: it must cost this client only — not the process, not the other
   * clients. Its stream state can no longer be trusted, so the client is disconnected.
   */
  private streamFailed(err: unknown): void {
    this.inXmlPush = false;
    this.chunk = null;
    this.switchAt = -1;
    this.metrics.drop.malformed.inc();
    this.dropped++;
    this.log.error({ audit: 'bad_input', kind: 'internal', err: (err as Error).stack ?? String(err) }, 'stream could not be parsed (internal error): client disconnected');
    this.close('error');
  }

  /** Bytes outside any event: counted; logged once unless this client was already logged for bad
   *  input (a rejected frame's bytes are skipped too, and one offender is one line) */
  private onJunk(bytes: number): void {
    this.metrics.junkBytes.inc(bytes);
    if (this.loggedReject === null) this.logOnce('junk', { bytes }, 'skipped bytes outside any CoT event (further ones are only counted)');
  }

  /**
   * Switch both directions to TAK Protocol v1, now. Called by the router while it handles the
   * client's t-x-takp-q, after it queued the XML response: everything queued later goes out as
   * protobuf, and the bytes after the request are read as protobuf (the client sends nothing
   * between its request and our answer, but a chunk boundary must not matter).
   */
  useProtobuf(): void {
    if (this.protobuf) return;
    this.protobuf = true;
    this.protoFramer = new ProtoFramer(this, this.limits.maxFrameBytes);
    if (!this.inXmlPush) return; // not inside a chunk: the next one is read as protobuf whole
    const f = this.framer;
    // every byte pushed so far is framed, ignored or skipped (nothing is buffered right after a
    // frame): the request ended this far into the current chunk
    const consumed = f.framedBytes + f.ignoredBytes + f.skippedBytes;
    this.switchAt = Math.min(Math.max(consumed - this.pushedBefore, 0), this.chunkLen);
    this.skippedAtSwitch = f.skippedBytes;
  }

  /** FramerSink: one complete event (from either framer; always XML). */
  frame(frame: Buffer): void {
    if (this.closed || this.switchAt >= 0) return; // switchAt: XML framer reading protobuf bytes
    this.eventsIn++;
    this.chunkEvents++;
    let h = scan(frame);
    if (!h.ok && h.reason === ScanReason.utf8 && this.protoFramer === null) {
      const utf8 = this.westernFrame(frame);
      if (utf8 !== null) { frame = utf8; h = scan(utf8); }
    }
    if (!h.ok) {
      this.metrics.drop.malformed.inc();
      this.dropped++;
      this.logOnce('malformed', { reason: h.reason, offset: h.offset });
      return;
    }
    const pf = this.protoFramer;
    // the byte budget counts what came over the wire (a protobuf message, not its XML)
    if (!this.takeTokens(pf !== null && pf.current !== null ? pf.current.length : frame.length)) return;
    // decoded from protobuf: while it is routed, the message it came from may be forwarded as is
    if (pf !== null) setInbound(this.id, frame, pf.currentAsIs ? pf.current : null);
    try {
      this.host.onFrame(this, frame, h, this.t0);
    } catch (err) {
      // a bug on some odd input must cost that event, not the process and every other client
      this.metrics.drop.malformed.inc();
      this.dropped++;
      if (this.firstOf('internal')) {
        this.log.error({ audit: 'bad_input', kind: 'internal', err: (err as Error).stack ?? String(err), uid: h.uid, type: h.type }, 'event could not be routed (internal error): dropped');
      }
    } finally {
      if (pf !== null) setInbound(0, null, null);
    }
  }

  /**
   * A frame that is not UTF-8, in UTF-8 when the client declared it ISO-8859-1 or windows-1252:
   * in the XML declaration right before it in the same read, or, when none is there (a frame
   * spread over reads), in the last one seen so far on this stream. null: refused as invalid UTF-8.
   */
  private westernFrame(frame: Buffer): Buffer | null {
    const c = this.chunk;
    if (c !== null && frame.buffer === c.buffer && frame.byteOffset >= c.byteOffset && frame.byteOffset + frame.length <= c.byteOffset + c.length) {
      const label = declaredEncoding(c, frame.byteOffset - c.byteOffset);
      if (label !== undefined) this.western = isWestern(label);
    }
    if (!this.western) return null;
    if (!this.westernLogged) {
      this.westernLogged = true;
      this.log.info({ audit: 'encoding', encoding: 'windows-1252' }, 'client sends events declared ISO-8859-1 / windows-1252: converted to UTF-8 for the other clients');
    }
    return windows1252ToUtf8(frame);
  }

  /** FramerSink: a frame discarded by the framer (oversize, DOCTYPE …). */
  reject(reason: FrameRejectReason, detail: string): void {
    if (this.switchAt >= 0) return;
    // received, then dropped: as a malformed event the scan refuses is (the drop counts are part of the received)
    this.eventsIn++;
    this.chunkEvents++;
    this.dropped++;
    this.metrics.drop[reason].inc();
    this.logOnce(reason, { detail });
  }

  /** true the first time this kind of bad input is seen for this client */
  private firstOf(kind: string): boolean {
    const seen = (this.loggedReject ??= new Set());
    if (seen.has(kind)) return false;
    seen.add(kind);
    return true;
  }

  private logOnce(kind: string, extra: Record<string, unknown>, msg = `dropped ${kind} input from client (further ones are only counted)`): void {
    if (!this.firstOf(kind)) return;
    this.log.warn({ audit: kind === 'oversize_out' ? 'dropped_output' : 'bad_input', kind, ...extra }, msg);
  }

  /** Token buckets on events/s and bytes/s; 0 disables a bucket. */
  private takeTokens(bytes: number): boolean {
    const l = this.limits;
    if (l.rateEvents === 0 && l.rateBytes === 0) return true;
    const now = this.t0;
    const dt = (now - this.lastRefill) / 1000;
    this.lastRefill = now;
    const byteCap = l.rateBytes * BYTE_BURST_SECONDS;
    if (l.rateEvents > 0) this.evTokens = Math.min(l.rateBurst, this.evTokens + dt * l.rateEvents);
    if (l.rateBytes > 0) this.byteTokens = Math.min(byteCap, this.byteTokens + dt * l.rateBytes);
    const evOk = l.rateEvents === 0 || this.evTokens >= 1;
    // a frame larger than the whole bucket still passes when the bucket is full (and empties it)
    const byOk = l.rateBytes === 0 || this.byteTokens >= bytes || this.byteTokens >= byteCap;
    if (evOk && byOk) {
      if (l.rateEvents > 0) this.evTokens -= 1;
      if (l.rateBytes > 0) this.byteTokens -= bytes;
      return true;
    }
    // one audit line per episode: drops closer together than EPISODE_GAP_MS are one episode
    if (now - this.rateLastDrop >= EPISODE_GAP_MS) {
      this.log.warn({ audit: 'rate_limit', rateEvents: l.rateEvents, rateBurst: l.rateBurst, rateBytes: l.rateBytes, droppedBefore: this.rateDrops },
        'client over its rate limit: dropping its excess events (until it slows down; counted in cot_events_dropped_total)');
    }
    this.rateLastDrop = now;
    this.rateDrops++;
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
    if (this.replayQ !== null) {
      // behind the replay, in order, under the same bound
      if (this.heldBytes + buf.length > this.limits.maxSendBuffer) { this.slowDrop(); return false; }
      (this.held ??= []).push(buf);
      this.heldBytes += buf.length;
      return true;
    }
    if (this.socket.writableLength + this.queuedBytes + buf.length > this.limits.maxSendBuffer) {
      this.slowDrop();
      return false;
    }
    this.enqueue(buf);
    return true;
  }

  /**
   * What a newcomer gets before anything else: the latest SA of every client, then the
   * announcement. All of it is sent (cutting it at the send-buffer bound would hide clients from
   * newcomers on big servers), but paced: one window (REPLAY_WINDOW_*) is handed to the socket at
   * a time, the rest as it drains. Handed over at once, the TLS layer encrypted the whole
   * cache into memory of its own for every newcomer: a few hundred connections that never read
   * held a copy each (measured: 1,000 clients with 2-KB SAs, 1.2 GB). Live events that come
   * meanwhile wait behind it in order, under the bound.
   */
  replay(frames: Buffer[], announce: boolean): void {
    if (this.closed) return;
    // built when its turn comes, not now: a replay paced over a slow link can outlast its 60-s stale
    if (announce) frames.push(ANNOUNCEMENT);
    if (frames.length === 0) return;
    this.replayQ = frames;
    this.replayAt = 0;
    this.pumpReplay();
  }

  private pumpReplay(): void {
    const q = this.replayQ!;
    // One window per pump. The next comes when the socket drains (onDrain), or, when the socket
    // took the window at once (a write that completes at once emits no 'drain'), on the turn
    // after its flush (flush(), replayNext).
    const start = this.queuedBytes;
    while (this.replayAt < q.length && this.queuedBytes - start < REPLAY_WINDOW) {
      let f = q[this.replayAt++];
      if (f === ANNOUNCEMENT) f = protocolSupport();
      // a client that switched to TAK protocol during its replay gets the rest in protobuf
      const b = this.protobuf ? frameProto(f) : f;
      if (b.length > 0) this.enqueue(b);
    }
    if (this.replayAt < q.length) return; // the rest when the socket drains (onDrain)
    this.replayQ = null;
    const h = this.held;
    if (h !== null) {
      this.held = null;
      this.heldBytes = 0;
      for (let i = 0; i < h.length; i++) this.enqueue(h[i]);
    }
  }

  private enqueue(buf: Buffer): void {
    this.queue.push(buf);
    this.queuedBytes += buf.length;
    if (!this.dirty) { this.dirty = true; this.flusher.mark(this); }
  }

  /** Deliver a routed event in this client's wire format (protobuf encoded once per envelope). */
  deliver(env: Envelope): boolean {
    if (!this.protobuf) return this.send(env.frame);
    const b = envelopeProto(env);
    return b.length > 0 ? this.send(b) : this.notEncodable(b);
  }

  /** Send an XML event the server made (pong …) in this client's wire format. */
  sendCot(xml: Buffer): boolean {
    if (!this.protobuf) return this.send(xml);
    const b = frameProto(xml);
    return b.length > 0 ? this.send(b) : this.notEncodable(b);
  }

  /** An event a protobuf client cannot get: too large (ATAK drops messages of 64 KiB and more), or
   *  one TAK Protocol cannot carry as it is (a <point> without numbers: it would arrive at 0,0 or NaN). */
  private notEncodable(why: Buffer): boolean {
    this.dropped++;
    if (why === UNCONVERTIBLE) {
      this.metrics.drop.unconvertible.inc();
      this.logOnce('unconvertible_out', {}, 'event without a numeric <point> lat/lon (or with a value that is not a number): TAK protocol cannot carry it, not sent to this client (further ones are only counted)');
      return false;
    }
    this.metrics.drop.oversize.inc();
    this.logOnce('oversize_out', { limit: 65535 }, 'event too large for TAK protocol (64 KiB): not sent to this client (further ones are only counted)');
    return false;
  }

  /**
   * The client's latest SA is valid for `ms` more (NaN: no parseable stale time): it is not idle
   * before then, however long it stays silent. A device reports again before its own SA goes
   * stale, and may send nothing else: ATAK on a TCP stream sends a stationary position every
   * 180 s (stale 375 s) and pings only when it has heard nothing for 15 s, so on a busy server it
   * is silent for 180 s.
   */
  holdFor(ms: number): void {
    this.holdUntil = ms > 0 ? this.t0 + Math.min(ms, MAX_SA_HOLD_MS) : -Infinity;
  }

  /** performance.now() until which the latest SA holds the connection open (holdFor) */
  private holdUntil = -Infinity;

  /** @internal the idle timer fired: close, unless bytes came since it was armed or an SA holds
   *  (or its bytes wait for a read pause to end: not idle) */
  onIdle(): void {
    const idle = this.limits.idleTimeout;
    const now = performance.now();
    // t0: when the last chunk arrived (0 before any)
    const due = this.readPaused ? now + idle : Math.max(this.t0 + idle, this.readResumedAt + idle, this.holdUntil);
    if (due - now >= 1) {
      // armed again for at most the idle timeout: refresh() by later chunks keeps that duration
      this.idleTimer = setTimeout(idleFired, Math.min(due - now, idle), this);
      this.idleTimer.unref();
      return;
    }
    this.close('idle');
  }

  /** performance.now() of the last flush (the FlushScheduler coalesces writes in time by it) */
  lastFlush = -Infinity;

  /** Write everything queued since the last flush in one go (called by the FlushScheduler). */
  flush(now: number): void {
    this.dirty = false;
    this.lastFlush = now;
    const q = this.queue;
    const n = q.length;
    if (n === 0 || this.closed) { q.length = 0; this.queuedBytes = 0; return; }
    if (n === 1) this.socket.write(q[0]);
    else {
      // corked writes leave as one writev: node's TLS layer copies the batch into one native
      // buffer for a single SSL_write (few records, one syscall) without a JS Buffer.concat,
      // whose per-session, per-tick garbage drove major GCs under load (see bench/README.md)
      const s = this.socket;
      s.cork();
      for (let i = 0; i < n; i++) s.write(q[i]);
      s.uncork();
    }
    this.eventsOut += n;
    this.bytesOut += this.queuedBytes;
    this.metrics.eventsDelivered.inc(n);
    this.metrics.bytesSent.inc(this.queuedBytes);
    q.length = 0;
    this.queuedBytes = 0;
    if (this.replayQ !== null && !this.replayNextSet && !this.socket.writableNeedDrain) {
      this.replayNextSet = true;
      setImmediate(replayNext, this);
    }
  }

  /** @internal the replay's next window, after a flush the socket took at once (flush) */
  onReplayNext(): void {
    this.replayNextSet = false;
    if (this.replayQ !== null && !this.closed && !this.socket.writableNeedDrain) this.pumpReplay();
  }

  private slowDrop(): void {
    this.dropped++;
    this.slowDrops++;
    this.metrics.drop.slow_consumer.inc();
    const now = performance.now();
    if (now - this.slowLastDrop >= EPISODE_GAP_MS) {
      this.log.warn({ audit: 'slow_consumer', queued: this.socket.writableLength + this.queuedBytes, limit: this.limits.maxSendBuffer, droppedBefore: this.slowDrops - 1 },
        'client not reading: dropping events for it (counted in cot_events_dropped_total)');
    }
    this.slowLastDrop = now;
    // the deadline runs from the first drop since the client last caught up (drain), not per drop
    if (this.slowTimer === null && this.limits.slowConsumerTimeout > 0) {
      this.slowTimer = setTimeout(slowFired, this.limits.slowConsumerTimeout, this);
      this.slowTimer.unref();
    }
  }

  /** @internal Everything written so far has left: the client caught up (socketDrain). */
  onDrain(): void {
    if (this.slowTimer) { clearTimeout(this.slowTimer); this.slowTimer = null; }
    if (this.replayQ !== null && !this.closed) this.pumpReplay();
  }

  /** @internal the slow-consumer deadline (slowFired) */
  onSlowTimeout(): void {
    this.slowTimer = null;
    // still behind (a send buffer below the stream's high-water mark may never emit 'drain')
    if (this.socket.writableLength > 0) this.close('slow_consumer');
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /** @internal (socketError) */
  onError(err: Error): void {
    if (!this.closed) this.log.debug({ err: err.message }, 'socket error');
    this.close('error');
  }

  /** Idempotent: clears every timer and listener, destroys the socket, tells the router once. */
  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    if (this.idleTimer) { clearTimeout(this.idleTimer); this.idleTimer = null; }
    if (this.slowTimer) { clearTimeout(this.slowTimer); this.slowTimer = null; }
    if (this.readTimer) { clearTimeout(this.readTimer); this.readTimer = null; }
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.replayQ = null;
    this.held = null;
    this.heldBytes = 0;
    const s = this.socket;
    s.off('data', socketData);
    s.off('end', socketEnd);
    s.off('drain', socketDrain);
    // keep an error listener: a late error on a destroyed socket must not crash the process
    s.off('close', socketClose);
    if (reason === 'shutdown' || reason === 'client') s.end();
    s.destroy();
    this.host.onClose(this, reason);
  }
}

// Socket and timer callbacks are shared by every session: the socket carries its session and a
// timer gets it as its argument. Per-session arrow functions cost ~300 bytes each for the life of
// the connection (tsx keeps function names, which gives every such closure its own property
// array); seven of them were ~2 KiB of every idle connection's memory.
const SESSION = Symbol('cotstream.session');
type SessionSocket = Duplex & { [SESSION]: Session };
function socketData(this: SessionSocket, chunk: Buffer): void { this[SESSION].onData(chunk); }
function socketEnd(this: SessionSocket): void { this[SESSION].close('client'); }
function socketClose(this: SessionSocket): void { this[SESSION].close('client'); }
function socketError(this: SessionSocket, err: Error): void { this[SESSION].onError(err); }
function socketDrain(this: SessionSocket): void { this[SESSION].onDrain(); }
function idleFired(s: Session): void { s.onIdle(); }
function readResume(s: Session): void { s.onReadResume(); }
function slowFired(s: Session): void { s.onSlowTimeout(); }
function replayNext(s: Session): void { s.onReplayNext(); }
