// The scale-out bus: every node publishes what its clients send on one Redis pub/sub channel and
// delivers what the others publish. Design, in the order an event meets it:
// - publish(): the local delivery happens at once, synchronously (no Redis round trip); the
//   envelope joins this tick's batch. One PUBLISH per tick carries the whole batch (flushed early
//   past maxBatchBytes), never awaited, never one per recipient.
// - Two connections: a publisher and a subscriber (a subscribed connection can do nothing else).
// - The publisher has ioredis's offline queue OFF, maxRetriesPerRequest 0 and no resend of
//   unanswered commands: ioredis itself never holds on to our publishes. What we hold is ours and
//   bounded: while Redis is down, batches wait in a ring of at most maxQueuedBytes and
//   maxQueueAgeMs (a blip loses nothing; after a long outage, minutes-old positions are worth
//   less than their cost); while it is up but slow, at most maxInflightBytes await their reply.
//   A batch lost with its connection is held again (holdAgain). Reconnected, we publish nothing
//   until the other nodes' subscribers are back too (awaitListeners).
//   Everything discarded or failed is counted in cot_bus_publish_errors_total (per envelope).
// - The subscriber resubscribes by itself (autoResubscribe off: we subscribe on every `ready`,
//   because ioredis's `ready` fires before its own resubscription has finished — we count as up
//   only once SUBSCRIBE has been answered).
// - Every batch carries its node id, a per-process epoch and a batch sequence: our own echoes are
//   dropped on the header alone, duplicates are dropped, gaps are counted (cot_bus_gaps_total).
// - Cluster-wide SA replay is rebuilt from the bus, not cached in Redis: a node that (re)joins
//   sends a sync request and every node answers with the latest SAs of its own clients (kind
//   `replay`). Only nodes that are alive answer, so only clients that are connected are replayed.
//   Nodes heartbeat; one silent for 3 beats is lost: the router drops its clients' SAs and
//   announces them disconnected. A node that stops cleanly says goodbye in its last batch (a
//   `leaving` mark) and is forgotten at once. See README "Scale-out with Redis".
// - Our own heartbeat comes back to us through Redis: a beat not echoed by the next one means a
//   Redis that hangs or a network that drops everything (a powered-off host sends no RST, and TCP
//   keepalive or retransmission would take minutes to say so). The node then counts itself down and
//   reconnects, instead of reporting ready while deaf and declaring every other node lost. A beat
//   that Redis answers with an error (an ACL without PUBLISH) is not a hang: the node is down with
//   that error, once, and up again when a beat goes through — reconnecting would not help.
// - A node declared lost that is heard again (it was frozen, or cut off from Redis alone) is asked
//   for its clients' SAs; the router shows our clients those they have not seen (Router.onEnvelope:
//   a replay that brings news): they were told its clients disconnected, and should see them again
//   now, not at each one's next report.
// - The cluster's signed revocation list lives in Redis beside the channel (crl-share.ts): offered
//   (ours, if newer) and fetched whenever we come up, fetched again at each `crl` notice.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import { BatchType, CodecError, type BatchHeader, markOf, decodeBatch, decodeHeader, encodeMark, encodeBatch, envelopeSize } from './codec.ts';
import { fetchCrl, offerCrl, type CrlShare } from './crl-share.ts';
import { EnvelopeKind, type Bus, type BusHost, type DeliverFn, type Envelope } from './types.ts';
import type { Metrics } from '../ops/metrics.ts';
import { redactUrl, type Logger } from '../ops/log.ts';
import { caPem } from '../pki/files.ts';

export const DEFAULT_CHANNEL = 'cotstream:v1';
/** how long a sync request waits for others to share its answer (a joining node waits 200 ms for
 *  the first one: start()) */
const ANSWER_COALESCE_MS = 100;
/** Redis's answers that mean "not you": a wrong password, an unknown user, an ACL */
const REFUSAL = /^(WRONGPASS|NOAUTH|NOPERM|ERR (AUTH|invalid password|Client sent AUTH))/;

export interface RedisBusOptions {
  url: string;
  nodeId: string;
  metrics: Metrics;
  log: Logger;
  /** TLS files of a rediss:// connection */
  tls?: RedisTlsFiles;
  channel?: string;
  /** liveness beat; a peer silent for 3 beats is lost */
  heartbeatMs?: number;
  /** a batch is published early once it holds this many bytes */
  maxBatchBytes?: number;
  /** held while Redis is down; the oldest batches go first */
  maxQueuedBytes?: number;
  /** held batches older than this are discarded instead of sent late */
  maxQueueAgeMs?: number;
  /** published but not yet acknowledged by Redis (Redis slow or a stalled socket) */
  maxInflightBytes?: number;
  /** how long start() waits for Redis before serving local clients alone */
  startWaitMs?: number;
}

/** PEM files of a rediss:// connection ('' = none): the server's CA(s) ('' = the system CAs), and
 *  our own certificate and key for a Redis that asks for one (tls-auth-clients, its default) */
export interface RedisTlsFiles { ca?: string; cert?: string; key?: string }

/** The ioredis options of one of our two connections (exported for tests). */
export function redisOptions(url: string, role: 'pub' | 'sub', nodeId: string, tls: RedisTlsFiles = {}): RedisOptions {
  const opts: RedisOptions = {
    connectionName: `cotstream:${nodeId}:${role}`,
    lazyConnect: true,
    connectTimeout: 5000,
    keepAlive: 10000,
    // reconnect quickly and keep trying: 100 ms, 200 ms … capped at 1 s
    retryStrategy: (times: number) => Math.min(100 * times, 1000),
    // our own bounded queue decides what survives an outage, not ioredis's unbounded one
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
  };
  if (url.startsWith('rediss://')) {
    // verified TLS always (Node's default); a private CA comes from --redis-ca
    opts.tls = { rejectUnauthorized: true };
    if (tls.ca) opts.tls.ca = caPem(readFileSync(tls.ca));
    if (tls.cert) opts.tls.cert = readFileSync(tls.cert);
    if (tls.key) opts.tls.key = readFileSync(tls.key);
  }
  return opts;
}

interface Held { buf: Buffer; count: number; at: number }
/** firstSeen: when this run of the node was first heard (ms) */
interface Peer { epoch: number; seq: number; lastSeen: number; firstSeen: number }

export class RedisBus implements Bus {
  readonly kind = 'redis' as const;
  readonly nodeId: string;
  readonly channel: string;
  private readonly epoch = randomBytes(4).readUInt32LE(0);
  private batchSeq = 0;
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly heartbeatMs: number;
  private readonly maxBatchBytes: number;
  private readonly maxQueuedBytes: number;
  private readonly maxQueueAgeMs: number;
  private readonly maxInflightBytes: number;
  private readonly startWaitMs: number;
  private readonly redisUrl: string;

  private deliver: DeliverFn | null = null;
  private host: BusHost | null = null;

  // this tick's batch
  private pending: Envelope[] = [];
  private pendingSizes: number[] = [];
  private pendingBytes = 0;
  private scheduled = false;
  private readonly flushRun = (): void => this.flush();

  // outage and backpressure bounds
  private readonly held: Held[] = [];
  private heldBytes = 0;
  private inflightBytes = 0;
  private discardedSinceUp = 0;

  // connection state
  private pubReady = false;
  private subReady = false;
  /** both connections ready (subscribed); up = connected and Redis not refusing our beats */
  private connected = false;
  private up = false;
  private closed = false;
  private everUp = false;
  private downSince = Date.now();
  private loggedDown = false;
  private lastError = '';
  /** the refusal (WRONGPASS, NOPERM, …) logged during this outage */
  private loggedRefusal = '';
  private upWaiters: Array<() => void> = [];
  private lastReplayAt = 0;

  // peers
  private readonly peers = new Map<string, Peer>();
  /** nodes declared lost: when, and the run (epoch) that went silent — heard again under the same
   *  epoch it was frozen or cut off, under another it was restarted */
  private readonly lost = new Map<string, { at: number; epoch: number }>();
  /** per node: the host's cacheMark() when the sync answer it is sending began to arrive (its
   *  start mark; until its end mark, or a gap) */
  private readonly answerStart = new Map<string, number>();
  /** nodes whose batches we missed (a gap): every node's state is asked for at the next beat,
   *  unless each of them has sent its complete state since (an answer to anyone's request) */
  private readonly gapped = new Set<string>();
  /** a sync request came while our publisher was not ready: answered once it is */
  private answerOwed = false;
  /** our sync request, asked for while we waited for the other nodes' subscribers */
  private syncOwed = false;
  /** reconnected: what we publish waits (held, in order) until the other nodes' subscribers are
   *  back on the channel too (awaitListeners); a run of the wait, so a stale timer knows it */
  private awaitingListeners = false;
  private listenRun = 0;
  /** the sync answer being sent: the rest of our state, read as the answer reaches it */
  private answering: Iterator<Envelope> | null = null;
  /** a request came while an answer was under way: one more answer after it */
  private answerAgain = false;
  private pumpScheduled = false;
  private readonly pumpRun = (): void => this.pumpAnswer();
  /** an answer is due (answerSoon): requests until then share it */
  private answerTimer: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** when our last heartbeat was published, and when one of ours last came back (ms) */
  private beatSentAt = 0;
  private echoAt = 0;
  /** the beatSentAt of the last beat Redis acknowledged (its PUBLISH answered on our publisher) */
  private beatAckedFor = 0;
  /** when the subscriber last delivered anything (ms): a backlog of messages ahead of our echo is
   *  a node behind, not a Redis that hangs */
  private heardAt = 0;
  /** Redis's error answer to our last heartbeat ('' when none), and whether that keeps us down */
  private beatRefused = '';
  private refused = false;
  private warnedSameId = false;
  /** the cluster's signed revocation list (shareRevocations) */
  private crl: CrlShare | null = null;
  /** per kind of bad message: when the last was seen, and how many so far (logged per episode) */
  private readonly bad = new Map<string, { last: number; count: number }>();

  constructor(o: RedisBusOptions) {
    this.nodeId = o.nodeId;
    this.channel = o.channel ?? DEFAULT_CHANNEL;
    this.metrics = o.metrics;
    this.log = o.log.child({ bus: 'redis' });
    this.heartbeatMs = o.heartbeatMs ?? 5000;
    this.maxBatchBytes = o.maxBatchBytes ?? 256 * 1024;
    this.maxQueuedBytes = o.maxQueuedBytes ?? 4 * 1024 * 1024;
    this.maxQueueAgeMs = o.maxQueueAgeMs ?? 5000;
    this.maxInflightBytes = o.maxInflightBytes ?? 32 * 1024 * 1024;
    this.startWaitMs = o.startWaitMs ?? 3000;
    this.redisUrl = redactUrl(o.url);
    if (Buffer.byteLength(this.nodeId) > 255) throw new Error('node id longer than 255 bytes');
    this.pub = new Redis(o.url, redisOptions(o.url, 'pub', o.nodeId, o.tls));
    this.sub = new Redis(o.url, redisOptions(o.url, 'sub', o.nodeId, o.tls));
    // errors are remembered, not logged: state changes are logged once each (see setUp)
    this.pub.on('error', this.onError);
    this.sub.on('error', this.onError);
    this.pub.on('ready', this.onPubReady);
    this.pub.on('close', this.onPubClose);
    this.sub.on('ready', this.onSubReady);
    this.sub.on('close', this.onSubClose);
    this.sub.on('messageBuffer', this.onMessage);
    o.metrics.busPeers = () => this.peers.size;
  }

  async start(deliver: DeliverFn, host?: BusHost): Promise<void> {
    this.deliver = deliver;
    this.host = host ?? null;
    this.metrics.busUp.set(0);
    this.pub.connect().catch(() => { /* retried by ioredis; reported through setUp */ });
    this.sub.connect().catch(() => { /* idem */ });
    this.timer = setInterval(this.tick, this.heartbeatMs);
    this.timer.unref();
    const t = Date.now();
    while (!this.up && Date.now() - t < this.startWaitMs) await this.waitUp(this.startWaitMs - (Date.now() - t));
    if (!this.up) {
      this.loggedDown = true;
      this.log.error({ audit: 'bus', state: 'down', redis: this.redisUrl, err: this.lastError || 'timeout' },
        `Redis unreachable at start (${this.lastError || 'no answer'}): serving local clients only, retrying in the background`);
      if (REFUSAL.test(this.lastError)) this.loggedRefusal = this.lastError;
      return;
    }
    // give the other nodes a moment to answer the sync request: newcomers get their SAs
    const t1 = Date.now();
    while (Date.now() - t1 < 1000 && (this.lastReplayAt === 0 ? Date.now() - t1 < 200 : Date.now() - this.lastReplayAt < 100)) {
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  private waitUp(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, Math.max(0, ms));
      this.upWaiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  isUp(): boolean {
    return this.up;
  }

  /** Share the cluster's revocation list through Redis (the server sets it before start()). */
  shareRevocations(share: CrlShare): void {
    this.crl = share;
  }

  /** Ours to Redis if it is newer than the one there, then Redis's here: both end with the newest. */
  private syncCrl(): void {
    const mine = this.crl?.newest();
    if (mine === undefined) { this.pullCrl(); return; }
    offerCrl(this.pub, this.channel, mine.der, mine.at, this.nodeId, this.epoch).then(() => this.pullCrl(), this.crlFailed);
  }

  private pullCrl(): void {
    if (this.crl === null || !this.pubReady) return;
    fetchCrl(this.pub, this.channel).then((der) => {
      // Redis lost ours (restarted empty) or holds an older one: put ours back, once
      if (der === undefined || this.crl?.offer(der, 'redis') === 'older') {
        const mine = this.crl?.newest();
        if (mine !== undefined && this.pubReady) offerCrl(this.pub, this.channel, mine.der, mine.at, this.nodeId, this.epoch).catch(this.crlFailed);
      }
    }, this.crlFailed);
  }

  private readonly crlFailed = (err: Error): void => {
    // e.g. an ACL without EVAL or HGET: revocation still works from each node's own --crl
    this.logBad('crl', 'cannot share the revocation list through Redis: each node enforces its own --crl only', { err: err.message });
  };

  // ---- publish ------------------------------------------------------------------------------

  publish(env: Envelope): void {
    this.deliver?.(env);
    if (this.closed) return;
    const size = envelopeSize(env);
    if (Number.isNaN(size)) {
      this.discard(1);
      // the bus knows sessions by id only: sid leads to the client's own audit lines (cn, serial, remote)
      this.logBad('unencodable', 'event with a uid, type or dest over 64 KiB not published on the bus (further ones are counted in cot_bus_publish_errors_total)', { sid: env.session, uidBytes: Buffer.byteLength(env.uid) });
      return;
    }
    this.pending.push(env);
    this.pendingSizes.push(size);
    this.pendingBytes += size;
    if (this.pendingBytes >= this.maxBatchBytes) this.flush();
    else if (!this.scheduled) { this.scheduled = true; setImmediate(this.flushRun); }
  }

  /** The header of our next batch: every batch we publish takes the next sequence number. */
  private header(type: BatchType = BatchType.events): BatchHeader {
    return { type, node: this.nodeId, epoch: this.epoch, seq: ++this.batchSeq };
  }

  /** Encode this tick's envelopes as one batch and hand it to Redis (or hold it while down). */
  flush(): void {
    this.scheduled = false;
    const n = this.pending.length;
    if (n === 0) return;
    const buf = encodeBatch(this.header(), this.pending, this.pendingSizes);
    this.pending = [];
    this.pendingSizes = [];
    this.pendingBytes = 0;
    this.send(buf, n);
  }

  private send(buf: Buffer, count: number): void {
    if (!this.pubReady || this.awaitingListeners) { this.hold(buf, count); return; }
    if (this.inflightBytes + buf.length > this.maxInflightBytes) { this.discard(count); return; }
    this.inflightBytes += buf.length;
    this.pub.publish(this.channel, buf).then(
      () => { this.inflightBytes -= buf.length; this.metrics.busOut.inc(count); this.answerMore(); },
      (err: Error) => {
        this.inflightBytes -= buf.length;
        // Redis's own refusal: resending would not help. A connection lost with the batch on it
        // (its error says only that: the connection's own is already in lastError): Redis may or
        // may not have passed it on, so it is held again for the reconnection, in sequence order
        // — a node that had it drops the second copy by its sequence number
        if (err instanceof ReplyError || this.closed) { this.lastError = err.message; this.discard(count); }
        else this.holdAgain(buf, count);
        this.answerMore();
      },
    );
  }

  /** A publish was answered: the sync answer under way, if any, may go on (once per tick). */
  private answerMore(): void {
    if (this.answering !== null && !this.pumpScheduled) { this.pumpScheduled = true; setImmediate(this.pumpRun); }
  }

  /** Keep a batch for when Redis is back; the ring drops its oldest past the byte bound. */
  private hold(buf: Buffer, count: number): void {
    if (count === 0) return; // heartbeats and sync requests are not worth keeping
    if (buf.length > this.maxQueuedBytes) { this.discard(count); return; }
    this.held.push({ buf, count, at: Date.now() });
    this.heldBytes += buf.length;
    this.boundHeld();
  }

  /** A batch published but lost with its connection: back among the held ones, before any later. */
  private holdAgain(buf: Buffer, count: number): void {
    if (count === 0 || buf.length > this.maxQueuedBytes) { this.discard(count); return; }
    const seq = decodeHeader(buf).seq;
    let i = this.held.length;
    while (i > 0 && decodeHeader(this.held[i - 1].buf).seq > seq) i--;
    this.held.splice(i, 0, { buf, count, at: Date.now() });
    this.heldBytes += buf.length;
    this.boundHeld();
    if (this.pubReady && !this.awaitingListeners) this.sendHeld(); // (reconnected already)
  }

  private boundHeld(): void {
    while (this.heldBytes > this.maxQueuedBytes) {
      const old = this.held.shift()!;
      this.heldBytes -= old.buf.length;
      this.discard(old.count);
    }
  }

  private sendHeld(): void {
    const now = Date.now();
    const held = this.held.splice(0);
    this.heldBytes = 0;
    for (const h of held) {
      if (now - h.at > this.maxQueueAgeMs) this.discard(h.count);
      else this.send(h.buf, h.count);
    }
  }

  private discard(count: number): void {
    this.metrics.busErrors.inc(count);
    this.discardedSinceUp += count;
  }

  /** A header-only batch: sync request or heartbeat (sent only while connected). */
  private control(type: BatchType): void {
    if (!this.pubReady) return;
    // nothing overtakes the held batches: a later sequence number first would make the receivers
    // drop them as duplicates (and a request the others cannot hear yet goes unanswered)
    if (this.awaitingListeners) { if (type === BatchType.sync) this.syncOwed = true; return; }
    if (type === BatchType.sync) this.syncOwed = false;
    if (type === BatchType.sync) this.metrics.busSync.asked.inc();
    const buf = encodeBatch(this.header(type), []);
    const sentAt = this.beatSentAt;
    this.pub.publish(this.channel, buf).then(() => {
      if (type === BatchType.heartbeat) this.beatAckedFor = sentAt;
    }, (err: Error) => {
      // Redis's own answer to a beat (an ACL refusing PUBLISH) is not a hang: see beat()
      if (type === BatchType.heartbeat && err instanceof ReplyError) this.beatRefused = err.message;
      // (a connection lost under it says only "max retries per request": the connection's own
      // error, already in lastError, is the one to log)
      if (err instanceof ReplyError) this.lastError = err.message;
      // refused: down now, one error line (a node stayed ready for two beats after its very first
      // publish, the sync request, was refused); beat() tells when Redis accepts us again
      if (err instanceof ReplyError && !this.refused) {
        this.refused = true;
        this.lastError = `Redis refused our ${type === BatchType.heartbeat ? 'heartbeat' : 'sync request'}: ${err.message}`;
        this.setUp();
      }
    });
  }

  /**
   * A sync request came: answered after ANSWER_COALESCE_MS, and one answer serves every request
   * that arrived meanwhile — after a Redis restart every node reconnects and asks within a few
   * hundred ms, and answering each request apart made every node publish its whole state once per
   * node (n² answers of megabytes each). Sound because a requester subscribes before it asks: any
   * request we have received was published before our start mark, which it therefore sees.
   */
  private answerSoon(): void {
    if (this.answerTimer !== null) return;
    this.answerTimer = setTimeout(this.answerNow, ANSWER_COALESCE_MS);
  }

  private readonly answerNow = (): void => {
    this.answerTimer = null;
    if (!this.closed) this.answerSync();
  };

  /**
   * Answer a sync request: the latest SAs of our own clients, in batches of maxBatchBytes, framed
   * by a start and an end mark. Paced: a few batches in flight at a time, the next as Redis
   * acknowledges one (pumpAnswer). Handed over all at once, a state larger than the in-flight bound
   * (some 8,000 clients) was cut off — its end mark too, so the asker never knew it complete and
   * asked again — and a large one crowded out the live events.
   */
  private answerSync(): void {
    // without a publisher the answer would wait in the ring without its marks (which are not
    // kept): answered whole, with the state of then, once the publisher is ready
    if (!this.pubReady || this.awaitingListeners) { this.answerOwed = true; return; }
    // a request that came during an answer may have missed its start mark: one more, after it
    if (this.answering !== null) { this.answerAgain = true; return; }
    this.answerOwed = false;
    // our own pending envelopes go first: batch order is sequence order
    this.flush();
    // a receiver that saw both marks, and every batch between them, knows our complete state and
    // drops the clients of ours it still holds that left while it could not hear their
    // disconnect notice (stateOf)
    this.send(encodeMark(this.header(), 'start'), 0);
    this.answering = this.host?.localState() ?? [][Symbol.iterator]();
    this.pumpAnswer();
  }

  /** Send the next batches of the answer under way, as far as the pacing allows (answerSync). */
  private pumpAnswer(): void {
    this.pumpScheduled = false;
    const it = this.answering;
    if (it === null) return;
    if (!this.pubReady || this.closed) {
      // cut off: the marks of a part answer prove nothing, so it is sent again, whole, when back
      this.answering = null;
      this.answerAgain = false;
      this.answerOwed = !this.closed;
      return;
    }
    // a few batches at a time: our heartbeat and live events queue behind what is in flight, and a
    // node busy with its clients drains its publisher slowly (measured, 2-3 MB/s with 2,000 clients
    // in bench/soak/sync.ts: with 16 MiB ahead of it the beat was not acknowledged in time and the
    // node took Redis for hung)
    const room = Math.min(this.maxInflightBytes / 2, 4 * this.maxBatchBytes);
    while (this.inflightBytes < room) {
      // what our clients sent before this batch is read goes out before it, in order
      this.flush();
      const batch: Envelope[] = [];
      const sizes: number[] = [];
      let bytes = 0;
      let done = false;
      while (bytes < this.maxBatchBytes) {
        const r = it.next();
        if (r.done === true) { done = true; break; }
        const size = envelopeSize(r.value);
        if (Number.isNaN(size)) continue;
        batch.push(r.value);
        sizes.push(size);
        bytes += size;
      }
      if (batch.length > 0) this.send(encodeBatch(this.header(), batch, sizes), batch.length);
      if (done) {
        this.send(encodeMark(this.header(), 'end'), 0);
        this.metrics.busSync.answered.inc();
        this.answering = null;
        if (this.answerAgain) { this.answerAgain = false; this.answerSync(); }
        return;
      }
    }
    // the rest as publishes are acknowledged (send)
  }

  // ---- receive ------------------------------------------------------------------------------

  private readonly onMessage = (channel: Buffer, msg: Buffer): void => {
    if (this.closed || this.deliver === null) return;
    this.heardAt = Date.now();
    try {
      const h = decodeHeader(msg);
      if (h.node === this.nodeId) {
        if (h.epoch === this.epoch) {
          if (h.type === BatchType.heartbeat) this.echoAt = Date.now();
        } else if (!this.warnedSameId) {
          this.warnedSameId = true;
          this.log.error({ audit: 'bus', nodeId: this.nodeId }, 'another node publishes with our node id: its events are ignored here (give each node its own --node-id)');
        }
        return; // our own echo: delivered locally already
      }
      // a newer revocation list in Redis: not a peer's batch (`revoke --redis` sends it too)
      if (h.type === BatchType.crl) { this.pullCrl(); return; }
      const now = Date.now();
      let p = this.peers.get(h.node);
      if (p === undefined || p.epoch !== h.epoch) {
        if (p !== undefined) {
          // the node restarted under the same id (a new epoch): the clients of its previous run
          // are gone with it, and the new run will never send their disconnect notices
          this.log.info({ audit: 'bus', peer: h.node }, 'node restarted: the clients of its previous run are announced disconnected');
          this.answerStart.delete(h.node);
          this.host?.nodeLost(h.node);
        } else if (this.lost.has(h.node)) {
          const gone = this.lost.get(h.node)!;
          this.lost.delete(h.node);
          if (gone.epoch === h.epoch) {
            this.log.info({ audit: 'bus', peer: h.node }, 'node declared lost is back on the bus: its clients\' SAs are asked for and shown again');
            this.control(BatchType.sync);
          } else {
            // a new run: the clients of the one that went silent were announced when it was lost,
            // and the new run's clients are shown as they report (nothing to show again)
            this.log.info({ audit: 'bus', peer: h.node }, 'node declared lost joined again as a new run (restarted)');
          }
        } else {
          this.log.info({ audit: 'bus', peer: h.node }, 'node joined the bus');
        }
        p = { epoch: h.epoch, seq: h.seq - 1, lastSeen: now, firstSeen: now };
        this.peers.set(h.node, p);
        // Heard from its first batch on, we have everything this run published. Heard later, what
        // it published before may hold SAs we never got (a stationary device stays off our map
        // until its next report, ATAK: 180 s): when both nodes came up while Redis was away, our
        // sync request went out before its subscriber was there, and nothing else would ever ask
        // it. Asked for as for a gap, unless its answer to someone comes first (beat()).
        if (h.seq !== 1) this.gapped.add(h.node);
      }
      p.lastSeen = now;
      if (h.seq <= p.seq && p.seq - h.seq < 0x80000000) return; // a duplicate (u32 sequence, wraps)
      const lost = (h.seq - p.seq - 1) >>> 0;
      if (lost > 0) {
        this.metrics.busGaps.inc(lost);
        // what we missed may hold disconnect notices: ask for every node's state (next beat),
        // even right after our own request on reconnecting — that node may not have heard it
        // (its subscriber was reconnecting too), and its answer is the only repair — unless a
        // complete answer from it comes first (to our request or another's: see the end mark)
        this.gapped.add(h.node);
        // and an answer in progress has a hole: its end proves nothing
        this.answerStart.delete(h.node);
      }
      p.seq = h.seq;
      if (h.type === BatchType.heartbeat) return;
      if (h.type === BatchType.sync) { this.answerSoon(); return; }
      if (h.count === 0) {
        // the frame of a sync answer (answerSync): complete if we saw its start and no gap since
        const mark = markOf(msg, h);
        if (mark === 'start') { if (this.host) this.answerStart.set(h.node, this.host.cacheMark()); return; }
        if (mark === 'leaving') { this.peerLeft(h.node); return; }
        const since = this.answerStart.get(h.node);
        if (since === undefined) return;
        this.answerStart.delete(h.node);
        // what the gap lost of this node is repaired: after a Redis restart every node sees gaps
        // and asked again at its next beat, though the answers to the first requests had covered them
        this.gapped.delete(h.node);
        this.metrics.busSync.complete.inc();
        this.host?.stateOf(h.node, since);
        return;
      }
      const batch = decodeBatch(msg, performance.now());
      const envs = batch.envelopes;
      this.metrics.busIn.inc(envs.length);
      const deliver = this.deliver;
      for (let i = 0; i < envs.length; i++) {
        const e = envs[i];
        // the SA cache keeps these: copy, or one cached SA pins the whole batch in memory; and so
        // does a directed event in a slow client's queue, whose bound counts only the frame's bytes
        // (a broadcast in that queue comes with the rest of its batch, which the client gets too)
        if (e.kind === EnvelopeKind.sa || e.kind === EnvelopeKind.replay) {
          e.frame = Buffer.from(e.frame);
          if (e.kind === EnvelopeKind.replay) this.lastReplayAt = now;
        } else if (e.callsigns !== null || e.uids !== null) {
          e.frame = Buffer.from(e.frame);
        }
        deliver(e);
      }
    } catch (err) {
      // a foreign or corrupt message on our channel: never fatal, logged a few times
      this.metrics.busUndecodable.inc();
      this.logBad('undecodable', 'undecodable message on the bus channel ignored (further ones are counted in cot_bus_undecodable_total)', { err: (err as Error).message, bytes: msg.length, codec: err instanceof CodecError });
    }
  };

  /**
   * One line per episode of bad messages of a kind (an episode ends after a minute without one),
   * with the count so far: a publisher spraying garbage on the channel is one line, not one per
   * message, and a later one is seen again (before, five lines for the life of the process).
   */
  private logBad(kind: string, msg: string, extra: Record<string, unknown> = {}): void {
    const now = Date.now();
    let b = this.bad.get(kind);
    if (b === undefined) { b = { last: -Infinity, count: 0 }; this.bad.set(kind, b); }
    if (now - b.last >= 60_000) this.log.warn({ audit: 'bus', kind, before: b.count, ...extra }, msg);
    b.last = now;
    b.count++;
  }

  // ---- connection state ---------------------------------------------------------------------

  private readonly onError = (err: Error): void => {
    this.lastError = err.message;
    // Down, a Redis that answers but refuses us (a password or ACL changed while we were away) is
    // said once: the line of the outage named only how the connection was lost
    if (this.loggedDown && !this.up && !this.closed && REFUSAL.test(err.message) && this.loggedRefusal !== err.message) {
      this.loggedRefusal = err.message;
      this.log.error({ audit: 'bus', state: 'refused', redis: this.redisUrl, err: err.message }, 'Redis answers but refuses this node (password or ACL): still serving local clients only');
    }
  };

  private readonly onPubReady = (): void => {
    this.pubReady = true;
    this.awaitListeners();
    this.setUp();
  };

  /**
   * Publish nothing until every node we know is subscribed again (PUBSUB NUMSUB: them and us), at
   * most maxQueueAgeMs: after a Redis restart each node reconnects on its own schedule, and Redis
   * keeps nothing for a subscriber that is not there yet. Sent at once, the batches held through
   * the outage (and what followed) were lost to the nodes that came back later — with no error
   * anywhere. Polled every 50 ms, only while reconnecting.
   */
  private awaitListeners(): void {
    this.awaitingListeners = true;
    const run = ++this.listenRun;
    const since = Date.now();
    const check = (): void => {
      if (run !== this.listenRun || !this.pubReady || this.closed) return;
      this.pub.pubsub('NUMSUB', this.channel).then((r) => {
        if (run !== this.listenRun) return;
        const subscribers = Number((r as unknown[])[1]);
        if (subscribers >= 1 + this.peers.size || Date.now() - since >= this.maxQueueAgeMs) this.listenersBack(run);
        else setTimeout(check, 50);
      }, () => this.listenersBack(run)); // PUBSUB not allowed (an ACL): published at once, as before
    };
    check();
  }

  private listenersBack(run: number): void {
    if (run !== this.listenRun || !this.awaitingListeners) return;
    this.awaitingListeners = false;
    this.sendHeld();
    if (this.syncOwed && this.up) { this.syncOwed = false; this.control(BatchType.sync); }
    if (this.answerOwed && !this.closed) this.answerSync();
  }

  private readonly onPubClose = (): void => {
    this.pubReady = false;
    this.awaitingListeners = false;
    this.listenRun++;
    if (this.answering !== null) this.pumpAnswer(); // given up: answered whole when back
    this.setUp();
  };

  private readonly onSubReady = (): void => {
    this.sub.subscribe(this.channel).then(
      () => { this.subReady = true; this.setUp(); },
      (err: Error) => {
        // refused on a live connection (e.g. NOPERM): reconnect and try again rather than stay
        // deaf; a connection that dropped meanwhile reconnects (and resubscribes) by itself
        this.lastError = err.message;
        if (!this.closed && this.sub.status === 'ready') this.sub.disconnect(true);
      },
    );
  };

  private readonly onSubClose = (): void => { this.subReady = false; this.setUp(); };

  private setUp(): void {
    const connected = this.pubReady && this.subReady && !this.closed;
    // fresh connections are judged from their own first beat, not from one sent on the old ones
    if (connected && !this.connected) this.beatSentAt = 0;
    this.connected = connected;
    const up = connected && !this.refused;
    if (up === this.up) return;
    this.up = up;
    this.metrics.busUp.set(up ? 1 : 0);
    if (up) {
      const now = Date.now();
      const after = this.everUp ? { downMs: now - this.downSince, discarded: this.discardedSinceUp } : {};
      this.log.info({ audit: 'bus', state: 'up', redis: this.redisUrl, nodeId: this.nodeId, ...after },
        this.everUp ? 'Redis bus connected again: cross-node delivery resumed' : 'Redis bus connected');
      this.everUp = true;
      this.loggedDown = false;
      this.loggedRefusal = '';
      this.discardedSinceUp = 0;
      // peers could not be heard while we were down: give them a fresh deadline
      for (const p of this.peers.values()) p.lastSeen = now;
      // we may have missed SAs: ask every node for its clients' latest
      this.control(BatchType.sync);
      if (this.crl !== null) this.syncCrl();
      for (const w of this.upWaiters.splice(0)) w();
    } else if (!this.closed) {
      this.downSince = Date.now();
      if (!this.loggedDown) {
        this.loggedDown = true;
        this.log.error({ audit: 'bus', state: 'down', redis: this.redisUrl, err: this.lastError || 'connection closed' },
          this.refused ? 'Redis refuses our publishes: serving local clients only, trying again every heartbeat'
            : 'lost the Redis bus: serving local clients only, reconnecting in the background');
        if (REFUSAL.test(this.lastError)) this.loggedRefusal = this.lastError;
      }
    }
  }

  /**
   * A node stopped cleanly and said so (its last batch). Its clients' disconnect notices came just
   * before it, so normally nothing is left to announce; anything that is (a notice lost in a gap)
   * is announced now. It is not lost (no warning, no sync asked for when it is heard again): a
   * rolling restart leaves an info line per node, not a "node silent" warning 3 beats later.
   */
  private peerLeft(node: string): void {
    this.peers.delete(node);
    this.answerStart.delete(node);
    this.log.info({ audit: 'bus', peer: node }, 'node left the bus (stopped)');
    this.host?.nodeLost(node);
  }

  /** Heartbeat, and the liveness check of Redis and of the other nodes. */
  private readonly tick = (): void => {
    // judged after this turn's I/O: an echo already in the socket is read first, so a loop that
    // was busy is not mistaken for a Redis that hangs
    if (this.connected) setImmediate(this.beat);
  };

  private readonly beat = (): void => {
    if (!this.connected) return; // ioredis is reconnecting
    if (this.awaitingListeners) return; // a beat would overtake the held batches (control())
    const now = Date.now();
    if (this.beatSentAt > 0 && this.echoAt < this.beatSentAt) {
      // Redis is delivering, we are behind (a sync answer of tens of MB queued ahead of our echo):
      // judged by the next beat. Taking this for a hang dropped the connections, and the node's
      // sync request on reconnecting made every node answer again: after a Redis restart with
      // 3 × 2,000 clients, 13 sync requests and 130 MB of answers over 30 s (bench/soak/sync.ts).
      // Behind only if Redis also acknowledged the beat: a publisher whose connection died alone
      // (a NAT or firewall that forgot it, a proxy) hears nothing back while the subscriber goes on
      // delivering the other nodes — taken for "behind", the node stayed ready while every event of
      // its clients vanished. A beat Redis refused is no hang either: control() took the node down
      // when the refusal came, and beats go on to tell when Redis accepts them again.
      if (this.beatRefused === '' && (this.heardAt <= this.beatSentAt || this.beatAckedFor !== this.beatSentAt)) {
        this.stalled(now - this.beatSentAt);
        return;
      }
    } else if (this.refused) {
      this.refused = false;
      this.setUp();
    }
    this.beatSentAt = now;
    this.beatRefused = '';
    this.control(BatchType.heartbeat);
    if (!this.up) return; // silence heard while we are deaf proves nothing
    if (this.gapped.size > 0 && this.mustAsk(now)) { this.gapped.clear(); this.control(BatchType.sync); }
    const deadline = now - 3 * this.heartbeatMs;
    for (const [node, p] of this.peers) {
      if (p.lastSeen >= deadline) continue;
      this.peers.delete(node);
      this.answerStart.delete(node);
      this.lost.set(node, { at: now, epoch: p.epoch });
      this.metrics.busNodesLost.inc();
      this.log.warn({ audit: 'bus', peer: node, silentMs: now - p.lastSeen }, 'node silent on the bus: its clients are announced disconnected');
      this.host?.nodeLost(node);
    }
    // lost nodes are remembered for an hour (a node restarted under a new id never comes back: the
    // map must not grow for ever)
    for (const [node, l] of this.lost) if (now - l.at > 3_600_000) this.lost.delete(node);
  };

  /**
   * Whether a node we lack state of (gapped) needs our sync request: not while its answer is
   * arriving (complete, it repairs; cut, the gap puts it back), nor within a beat of first hearing
   * it (a joining node's own request is answered by then: asking again made a busy node send its
   * whole state twice).
   */
  private mustAsk(now: number): boolean {
    for (const node of this.gapped) {
      const p = this.peers.get(node);
      if (p === undefined) { this.gapped.delete(node); continue; } // lost or left: nothing to ask
      if (this.answerStart.has(node) || now - p.firstSeen < this.heartbeatMs) continue;
      return true;
    }
    return false;
  }

  /** Our heartbeat did not come back: Redis hangs or the network drops everything. */
  private stalled(ms: number): void {
    this.lastError = `no echo of our heartbeat from Redis in ${ms} ms (Redis hung or the network path to it dead)`;
    this.pubReady = false;
    this.subReady = false;
    this.setUp(); // down: one error line, cot_bus_up 0, /readyz 503; publishes are held (bounded)
    // fresh connections: a dead path fails connectTimeout and retries; a hung Redis never answers
    // the ready check, so the node stays down until Redis serves again
    this.pub.disconnect(true);
    this.sub.disconnect(true);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // what our clients said last (their disconnect notices included) still goes out, then our
    // goodbye: the other nodes forget us at once instead of judging us lost 3 beats later
    this.flush();
    if (this.pubReady) this.send(encodeMark(this.header(), 'leaving'), 0);
    this.closed = true;
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
    if (this.answerTimer) { clearTimeout(this.answerTimer); this.answerTimer = null; }
    this.setUp();
    this.metrics.busUp.set(0);
    this.deliver = null;
    const quit = this.pubReady ? this.pub.quit().catch(() => undefined) : Promise.resolve();
    await Promise.race([quit, new Promise((r) => setTimeout(r, 1000).unref())]);
    this.pub.disconnect();
    this.sub.disconnect();
    for (const w of this.upWaiters.splice(0)) w();
  }
}
