// Who gets an event. Control types are answered or consumed here; everything else goes out once
// on the bus as an Envelope and every node (this one synchronously) delivers it to its matching
// local sessions, never back to the sender. The latest-SA cache lives here too.
import { performance } from 'node:perf_hooks';
import { eventTimeMs, type CotHeader } from '../protocol/scan.ts';
import { pong, disconnectNotice } from '../protocol/control.ts';
import { streamable } from '../protocol/xml.ts';
import { onProtocolRequest } from './negotiate.ts';
import { EnvelopeKind, type Bus, type BusHost, type Envelope } from './bus/types.ts';
import type { Session, FlushScheduler } from './session.ts';
import type { Logger } from './ops/log.ts';
import type { Metrics } from './ops/metrics.ts';

/** Directed to this callsign means everyone (ATAK's broadcast pseudo-contact). */
const ALL_STREAMING = 'All Streaming';
/** callsign changes logged per session; later ones only change the routing */
const MAX_RENAME_LOGS = 10;
/**
 * An SA larger than this is routed but not cached: every newcomer is sent every cached SA before
 * anything else, uncut by --max-send-buffer, so a few clients with 1-MiB SAs (padded remarks) made
 * every device that connected later download megabytes. ATAK's own SAs are 1-4 KB, and TAK
 * protocol clients cannot take 64 KiB or more at all.
 */
const MAX_CACHED_SA_BYTES = 65535;

/** frame without bytes [s, e) */
function cut(frame: Buffer, s: number, e: number): Buffer {
  const out = Buffer.allocUnsafe(frame.length - (e - s));
  frame.copy(out, 0, 0, s);
  frame.copy(out, s, e);
  return out;
}

/** frame without [s, e) and the further ranges in `more` (ascending, non-overlapping) */
function cutAll(frame: Buffer, s: number, e: number, more: number[]): Buffer {
  let removed = e - s;
  for (let i = 0; i < more.length; i += 2) removed += more[i + 1] - more[i];
  const out = Buffer.allocUnsafe(frame.length - removed);
  let o = frame.copy(out, 0, 0, s);
  let from = e;
  for (let i = 0; i < more.length; i += 2) {
    o += frame.copy(out, o, from, more[i]);
    from = more[i + 1];
  }
  frame.copy(out, o, from);
  return out;
}

interface SaEntry {
  uid: string;
  type: string;
  staleMs: number;
  frame: Buffer;
  /** node and session that own it (the SA leaves the cache when that session goes) */
  node: string;
  session: number;
  /** the owner's certificate serial (undefined: unknown — a plaintext client, an older node) */
  owner: string | undefined;
  /** when cached, as a position in the cache's history (cacheMark): a node's complete state
   *  prunes what it no longer holds (stateOf) */
  gen: number;
}

export interface RouterOptions {
  announce: boolean;
}

export class Router implements BusHost {
  readonly sessions = new Set<Session>();
  private readonly byUid = new Map<string, Session>();
  private readonly byCallsign = new Map<string, Set<Session>>();
  private readonly sa = new Map<string, SaEntry>();
  /** bumped by every SA cached and every cacheMark() */
  private cacheSeq = 0;
  private seq = 0;
  private sweepTimer: NodeJS.Timeout;
  /** a log line per event only at debug level, decided once here (a no-op branch otherwise) */
  private readonly debugEvents: boolean;

  constructor(
    private readonly bus: Bus,
    private readonly flusher: FlushScheduler,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly opts: RouterOptions,
  ) {
    this.debugEvents = log.isLevelEnabled('debug');
    metrics.saCacheSize = () => this.sa.size;
    // stale SAs also leave the cache between newcomers, so memory follows live clients only
    this.sweepTimer = setInterval(() => this.sweep(Date.now()), 10_000);
    this.sweepTimer.unref();
  }

  /** Bound once and handed to the bus. */
  readonly deliver = (env: Envelope): void => this.onEnvelope(env);

  // ---- sessions -----------------------------------------------------------------------------

  /** A client finished its handshake: replay the latest SAs, announce the TAK protocol. */
  add(s: Session): void {
    this.sessions.add(s);
    this.metrics.connections.set(this.sessions.size);
    const now = Date.now();
    const frames: Buffer[] = [];
    for (const e of this.sa.values()) {
      if (e.staleMs <= now) { this.sa.delete(e.uid); continue; }
      frames.push(e.frame);
    }
    s.replay(frames, this.opts.announce);
  }

  onClose(s: Session, reason: string): void {
    if (!this.sessions.delete(s)) return;
    this.metrics.connections.set(this.sessions.size);
    this.metrics.sessionsClosed.labels(reason).inc();
    s.log.info({
      audit: 'closed', reason, uid: s.uid || undefined, callsign: s.callsign || undefined, durationMs: Date.now() - s.connectedAt,
      eventsIn: s.eventsIn, eventsOut: s.eventsOut, bytesIn: s.bytesIn, bytesOut: s.bytesOut, dropped: s.dropped,
      droppedRateLimit: s.rateDrops || undefined, droppedSlowConsumer: s.slowDrops || undefined, readPausedMs: s.readPausedMs || undefined,
    }, 'client disconnected');
    const uid = s.uid;
    if (uid) {
      if (this.byUid.get(uid) === s) this.byUid.delete(uid);
      this.unindexCallsign(s);
      // A device that already reconnected under the same uid is still online, one that deleted
      // itself has been announced: no delete notice.
      if (!this.byUid.has(uid) && !s.departed) {
        // t0 NaN: made here, not read from a client, so not a delivery latency
        this.publish(EnvelopeKind.gone, 0, uid, s.saType, NaN, null, null, disconnectNotice(uid, s.saType), NaN);
      }
    }
  }

  // ---- inbound events -----------------------------------------------------------------------

  onFrame(s: Session, frame: Buffer, h: CotHeader, t0: number): void {
    if (h.control) {
      // pings are answered to the sender only; every other control type is consumed
      if (h.type === 't-x-c-t') s.sendCot(pong());
      else if (h.type === 't-x-takp-q') onProtocolRequest(s, frame, h, this.opts.announce);
      return;
    }
    const isDelete = h.type === 't-x-d-d';
    // pytak's hello: a delete of nothing
    if (isDelete && h.uid === 'takPing' && h.linkUid === undefined) return;

    // A uid belongs to the connected session it names. Another certificate speaking for it would
    // move the owner's marker, take its directed traffic and its cache entry, and send a delete
    // for it on leaving: dropped. The same certificate may take over (a device reconnecting
    // before its old connection timed out).
    const owner = this.byUid.get(h.uid);
    if (owner !== undefined) {
      if (owner !== s && owner.identity.serial !== s.identity.serial) {
        this.uidConflict(s, h.uid, { ownerSid: owner.id, ownerCn: owner.identity.cn });
        return;
      }
    } else if (this.sa.size > 0) {
      // the same rule across nodes: the uid of a live SA from another node, another certificate
      const e = this.sa.get(h.uid);
      if (e !== undefined && e.owner !== undefined && e.node !== this.bus.nodeId && e.owner !== s.identity.serial && !(e.staleMs <= Date.now())) {
        this.uidConflict(s, h.uid, { ownerNode: e.node });
        return;
      }
    }

    let isSa = false;
    /** ms an SA of this session's stays valid (NaN: none, or no parseable stale) */
    let valid = NaN;
    /** for an SA: the epoch ms on our clock until which it is valid (NaN: no end) */
    let until = h.staleMs;
    if (h.endpoint !== undefined && h.callsign !== undefined) {
      if (!s.uid) this.identify(s, h.uid, h.callsign, owner);
      if (h.uid === s.uid) {
        if (h.callsign !== s.callsign) this.rename(s, h.callsign);
        s.saType = h.type;
        s.departed = false;
        // How long the device means its report to hold is stale - time, both by its own clock;
        // counted from now on ours. Its clock may be minutes off (no NTP, set by hand): stale - now
        // made the SA of a device 10 minutes slow stale on arrival — never replayed, and the device
        // closed as idle between its reports — and one 10 minutes fast replayed 10 minutes too long.
        // Without a parseable time, stale against our clock as before.
        const now = Date.now();
        valid = h.timeMs === h.timeMs ? h.staleMs - h.timeMs : h.staleMs - now;
        until = now + valid;
        // a device is not idle while its own position report is valid (ATAK: 180 s apart)
        s.holdFor(valid);
        isSa = true;
      }
    }

    let callsigns: string[] | null = null;
    let uids: string[] | null = null;
    let out: Buffer;
    if (h.martiStart >= 0) {
      // strip <marti> so recipients never see routing metadata; one new Buffer shared by all
      out = h.martiMore === undefined ? cut(frame, h.martiStart, h.martiEnd) : cutAll(frame, h.martiStart, h.martiEnd, h.martiMore);
      const d = h.dests;
      let broadcast = d.length === 0;
      for (let i = 0; i < d.length && !broadcast; i++) {
        const c = d[i].callsign;
        const u = d[i].uid;
        if (c !== undefined) {
          if (c === ALL_STREAMING) broadcast = true;
          else (callsigns ??= []).push(c);
        }
        if (u !== undefined) (uids ??= []).push(u);
      }
      if (broadcast) { callsigns = null; uids = null; }
      // dests that name nobody (<dest/>) still make the event directed: to no one
      else if (callsigns === null && uids === null) uids = [];
    } else {
      // the framer's slice may point into a buffer it reuses, and a slice of a socket chunk would
      // pin the whole chunk in every queue and the SA cache: recipients get a stable, exact copy
      out = Buffer.from(frame);
    }
    // as recipients find events in a stream: `<event ` … `</event>` exactly (out is ours to change)
    out = streamable(out);
    // The SA cache holds what every newcomer may see: broadcast SAs only (a directed one would
    // leak to whoever connects next). One already stale on arrival is routed (the recipients
    // judge) but never cached, so it can neither evict a good SA nor be replayed.
    const kind = isSa && callsigns === null && uids === null && !(valid <= 0) && out.length <= MAX_CACHED_SA_BYTES ? EnvelopeKind.sa : EnvelopeKind.event;
    if (this.debugEvents) s.log.debug({ type: h.type, uid: h.uid, bytes: out.length, callsigns, uids }, 'event');
    if (isDelete && h.linkUid === s.uid && s.uid !== '' && callsigns === null && uids === null) {
      // A client deleting itself (leaving without closing the connection yet): everyone gets its
      // delete, as any other, and every node's cache drops its SA — a newcomer would otherwise be
      // shown a contact the others were told is gone. Only the sender's own uid: a delete naming
      // another client's uid is an ordinary event (the uid rule above keeps others from it).
      s.departed = true;
      this.publish(EnvelopeKind.gone, s.id, s.uid, s.saType, NaN, null, null, out, t0);
      return;
    }
    // an SA names its owner's certificate: other nodes hold its uid for it (plaintext: unknown);
    // its stale time on the bus is on our clock (`until`), so every node's replay agrees
    this.publish(kind, s.id, h.uid, h.type, kind === EnvelopeKind.sa ? until : h.staleMs, callsigns, uids, out, t0, kind === EnvelopeKind.sa && s.identity.serial !== '' ? s.identity.serial : undefined);
  }

  private uidConflict(s: Session, uid: string, owner: { ownerSid: number; ownerCn: string } | { ownerNode: string }): void {
    s.dropped++;
    this.metrics.drop.uid_conflict.inc();
    if (s.loggedConflict) return;
    s.loggedConflict = true;
    s.log.warn({ audit: 'uid_conflict', uid, ...owner }, 'client sent events under the uid of another connected client: dropped (further ones are only counted)');
  }

  private publish(kind: EnvelopeKind, session: number, uid: string, type: string, staleMs: number,
    callsigns: string[] | null, uids: string[] | null, frame: Buffer, t0: number, owner?: string): void {
    this.bus.publish({ kind, node: this.bus.nodeId, session, seq: ++this.seq, uid, type, staleMs, callsigns, uids, frame, t0, owner });
  }

  private identify(s: Session, uid: string, callsign: string, prev: Session | undefined): void {
    s.uid = uid;
    this.byUid.set(uid, s);
    this.indexCallsign(s, callsign);
    s.log.info({ audit: 'identified', uid, callsign, replaced: prev ? prev.id : undefined }, 'client identified');
    // A takeover (same certificate, same uid): the device reconnected, typically after a network
    // change that left its old connection dead without a FIN. That one is closed now rather than
    // held until its SA is stale (minutes) — writing every event into a dead socket meanwhile.
    // byUid already names the new one, so no delete notice goes out.
    if (prev !== undefined && prev !== s) prev.close('replaced');
  }

  private rename(s: Session, callsign: string): void {
    this.unindexCallsign(s);
    this.indexCallsign(s, callsign);
    // a client cycling callsigns must not flood the log
    if (s.renames++ < MAX_RENAME_LOGS) s.log.info({ audit: 'callsign', uid: s.uid, callsign, last: s.renames === MAX_RENAME_LOGS || undefined }, 'client changed callsign');
  }

  private indexCallsign(s: Session, callsign: string): void {
    s.callsign = callsign;
    if (callsign === '') return; // <dest callsign=""/> names nobody
    let set = this.byCallsign.get(callsign);
    if (!set) { set = new Set(); this.byCallsign.set(callsign, set); }
    set.add(s);
  }

  private unindexCallsign(s: Session): void {
    const set = this.byCallsign.get(s.callsign);
    if (set) { set.delete(s); if (set.size === 0) this.byCallsign.delete(s.callsign); }
  }

  // ---- delivery (every node, for every envelope) ---------------------------------------------

  private onEnvelope(env: Envelope): void {
    const local = env.node === this.bus.nodeId;
    if (env.kind === EnvelopeKind.sa || env.kind === EnvelopeKind.replay) {
      const prev = env.kind === EnvelopeKind.replay ? this.sa.get(env.uid) : undefined;
      // A sync answer is about the answering node's clients as it saw them when it answered: one
      // naming a device we know from another node may be older than what we have — the device
      // reconnected through that other node, and the answering node had not heard it yet (it then
      // closes its old connection). Its own clock, in both SAs, says which is newer; taking the
      // older moved the device back on every map, and cached it as the answering node's client,
      // whose closing of the old connection then announced it disconnected.
      if (prev !== undefined && prev.node !== env.node && eventTimeMs(prev.frame) > eventTimeMs(env.frame)) return;
      this.sa.set(env.uid, { uid: env.uid, type: env.type, staleMs: Number.isNaN(env.staleMs) ? Infinity : env.staleMs, frame: env.frame, node: env.node, session: env.session, owner: env.owner, gen: ++this.cacheSeq });
      if (env.kind === EnvelopeKind.replay) {
        // A node's answer to a sync request: our clients have seen what we had cached (live, or in
        // their own replay), so the same SA again is for the cache only. One we did not have, or a
        // newer one, they have not seen: it crossed no bus (published while Redis was away past the
        // held-publish window, or by a node we had declared lost), or they were told its client
        // left. Shown now, once: a stationary ATAK reports every 180 s.
        if (prev !== undefined && prev.frame.equals(env.frame)) return;
      } else if (!local && env.owner !== undefined) {
        // the same takeover across nodes: the device reconnected through another node (the balancer
        // chose another); its old connection here is closed (the SA just cached from there keeps the
        // delete notice from going out)
        const old = this.byUid.get(env.uid);
        if (old !== undefined && old.identity.serial === env.owner) old.close('replaced');
      }
    } else if (env.kind === EnvelopeKind.gone) {
      // the client already reconnected through another node (its SA came from there): not gone
      const e = this.sa.get(env.uid);
      if (e !== undefined && e.node !== env.node) return;
      this.sa.delete(env.uid);
    }
    let n = 0;
    if (env.callsigns === null && env.uids === null) {
      for (const s of this.sessions) {
        if (local && s.id === env.session) continue;
        if (s.deliver(env)) n++;
      }
    } else {
      n = this.deliverDirected(env, local);
    }
    if (n > 0 && local && env.t0 === env.t0) this.flusher.delivered(env.t0);
  }

  /** Recipients named by uid or callsign, each once; a reused scratch list keeps this allocation-free. */
  private readonly seen: Session[] = [];
  /** stamped on a session once it is in `seen`: "named twice" is O(1), so an event naming every
   *  client many times over costs linear time, not quadratic */
  private mark = 0;

  private deliverDirected(env: Envelope, local: boolean): number {
    const seen = this.seen;
    const mark = ++this.mark;
    const origin = local ? env.session : -1;
    if (env.uids) {
      for (const u of env.uids) {
        const s = this.byUid.get(u);
        if (s !== undefined && s.routeMark !== mark && s.id !== origin) { s.routeMark = mark; seen.push(s); }
      }
    }
    if (env.callsigns) {
      for (const c of env.callsigns) {
        const set = this.byCallsign.get(c);
        if (set === undefined) continue;
        for (const s of set) if (s.routeMark !== mark && s.id !== origin) { s.routeMark = mark; seen.push(s); }
      }
    }
    let n = 0;
    for (let i = 0; i < seen.length; i++) if (seen[i].deliver(env)) n++;
    seen.length = 0;
    return n;
  }

  // ---- multi-node state (BusHost) -----------------------------------------------------------

  /**
   * The latest non-stale SAs of this node's own clients, for a node that joined the bus. Lazy: each
   * envelope is made when the answer reaches it, from the cache as it is then (a Map iterator skips
   * entries deleted meanwhile and sees a renewed SA in place), so an answer paced over many
   * publishes never sends the SA of a client that has left since — after its disconnect notice,
   * that would put it back on every other node's map.
   */
  *localState(): Generator<Envelope, void, undefined> {
    const node = this.bus.nodeId;
    for (const e of this.sa.values()) {
      if (e.node !== node || e.staleMs <= Date.now()) continue;
      yield { kind: EnvelopeKind.replay, node, session: e.session, seq: ++this.seq, uid: e.uid, type: e.type, staleMs: e.staleMs === Infinity ? NaN : e.staleMs, callsigns: null, uids: null, frame: e.frame, t0: 0, owner: e.owner };
    }
  }

  /** A node went silent (crashed, cut off) or restarted: its clients are gone for ours — drop and announce. */
  nodeLost(node: string): void {
    this.dropNodeSas(node, Infinity);
  }

  /** A position in the SA cache's history: what is cached from now on comes after it. */
  cacheMark(): number {
    return ++this.cacheSeq;
  }

  /**
   * `node` just sent its complete state (the answer to a sync request, which began arriving at
   * cacheMark() `since`): its clients whose SA we cached before that and that the answer did not renew left
   * while we could not hear their disconnect notice (lost with the publishes of a Redis outage).
   * Without this they stayed on every map here and were replayed to every newcomer until their
   * stale time — with a stale time days ahead, for days. Dropped and announced.
   */
  stateOf(node: string, since: number): void {
    if (node === this.bus.nodeId) return;
    const n = this.dropNodeSas(node, since);
    if (n > 0) this.log.info({ audit: 'bus', peer: node, clients: n }, 'clients of another node that left while the bus was cut: announced disconnected');
  }

  /** Drop, and announce disconnected, the SAs of `node` cached before the mark `before`. */
  private dropNodeSas(node: string, before: number): number {
    const t0 = performance.now();
    let n = 0;
    for (const e of [...this.sa.values()]) {
      if (e.node !== node || !(e.gen < before)) continue;
      n++;
      this.onEnvelope({ kind: EnvelopeKind.gone, node, session: e.session, seq: 0, uid: e.uid, type: e.type, staleMs: NaN, callsigns: null, uids: null, frame: disconnectNotice(e.uid, e.type), t0 });
    }
    return n;
  }

  private sweep(now: number): void {
    for (const e of this.sa.values()) if (e.staleMs <= now) this.sa.delete(e.uid);
  }

  /** Drop the SA of a session that is gone (its disconnect notice does this cluster-wide). */
  close(): void {
    clearInterval(this.sweepTimer);
  }
}
