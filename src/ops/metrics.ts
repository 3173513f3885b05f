// Every metric of DESIGN.md §3 in one registry. Label values are fixed sets (reasons, results,
// directions): no label ever carries a callsign, uid, serial or IP.
//
// The hot path records into plain numbers (HotCounter, HotHistogram): an add into a Float64Array,
// no allocation per event. prom-client's own `inc()`/`observe()` allocate on every call (label
// objects, hash strings, closures), so they are only used for what changes rarely (gauges, closes);
// the hot values are copied into prom-client at scrape time from `collect()`.
import client from 'prom-client';
import { LOOP_LAG_METRICS, registerLoopLag } from './looplag.ts';

export const HandshakeResult = {
  ok: 'ok', revoked: 'revoked', no_cert: 'no_cert', limit: 'limit', bad_cert: 'bad_cert', timeout: 'timeout', error: 'error',
} as const;
export type HandshakeResult = keyof typeof HandshakeResult;

export const DropReason = {
  slow_consumer: 'slow_consumer', rate_limit: 'rate_limit', oversize: 'oversize', malformed: 'malformed',
  /** an event under the uid of another connected client (another certificate) */
  uid_conflict: 'uid_conflict',
  /** not sent to a protobuf client: TAK Protocol cannot carry it as it is (a <point> without numbers) */
  unconvertible: 'unconvertible',
} as const;
export type DropReason = keyof typeof DropReason;

/** Why a client session ended (`cot_sessions_closed_total{reason}`). */
export const CloseReason = {
  client: 'client', idle: 'idle', slow_consumer: 'slow_consumer', revoked: 'revoked', shutdown: 'shutdown', error: 'error', protocol: 'protocol', replaced: 'replaced',
} as const;
export type CloseReason = keyof typeof CloseReason;

export const BusDirection = { in: 'in', out: 'out' } as const;
export type BusDirection = keyof typeof BusDirection;
/** the state sync between nodes (src/bus/redis.ts): what an operator needs to see a node asking again and again */
export const BusSync = { asked: 'asked', answered: 'answered', complete: 'complete' } as const;
export type BusSync = keyof typeof BusSync;

/** Which certificate a `cot_certificate_expiry_timestamp_seconds` series describes. */
export const CertKind = { ca: 'ca', server: 'server' } as const;
export type CertKind = keyof typeof CertKind;

/** Upper bounds of `cot_delivery_latency_seconds`: 50 µs (one tick on an idle loop) to 5 s. */
export const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;

/** A monotonic count the hot path bumps without allocating; read by prom-client at scrape time. */
export class HotCounter {
  private readonly cell = new Float64Array(1);
  inc(n = 1): void {
    this.cell[0] += n;
  }
  get value(): number {
    return this.cell[0];
  }
}

/**
 * A fixed-bucket histogram recorded into typed arrays (no allocation per observation) and
 * exposed to prom-client as a regular `histogram` metric.
 */
export class HotHistogram {
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum';
  readonly labelNames: string[] = [];
  private readonly bounds: Float64Array;
  /** per-bucket (non-cumulative) counts; the last slot is +Inf */
  private readonly counts: Float64Array;
  /** [sum, count] */
  private readonly totals = new Float64Array(2);

  constructor(readonly name: string, readonly help: string, buckets: readonly number[], registry: client.Registry) {
    this.bounds = Float64Array.from(buckets);
    this.counts = new Float64Array(buckets.length + 1);
    // the registry only needs name/help/type and get()/reset(): the same contract as prom-client's
    registry.registerMetric(this as unknown as client.Histogram);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i]++;
    this.totals[0] += v;
    this.totals[1]++;
  }

  get count(): number {
    return this.totals[1];
  }

  get sum(): number {
    return this.totals[0];
  }

  reset(): void {
    this.counts.fill(0);
    this.totals.fill(0);
  }

  /** prom-client's metric contract (called at scrape time only). */
  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: client.Aggregator; values: client.MetricValueWithName<string>[] }> {
    const bucket = `${this.name}_bucket`;
    const values: client.MetricValueWithName<string>[] = [];
    let acc = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      acc += this.counts[i];
      values.push({ metricName: bucket, labels: { le: this.bounds[i] }, value: acc });
    }
    values.push(
      { metricName: bucket, labels: { le: '+Inf' }, value: this.totals[1] },
      { metricName: `${this.name}_sum`, labels: {}, value: this.totals[0] },
      { metricName: `${this.name}_count`, labels: {}, value: this.totals[1] },
    );
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' });
  }
}

/** A prom-client counter whose value is read from a HotCounter at scrape time. */
function hotCounter(registry: client.Registry, name: string, help: string): HotCounter {
  const hot = new HotCounter();
  new client.Counter({
    name, help, registers: [registry],
    collect() { this.reset(); this.inc(hot.value); },
  });
  return hot;
}

/** One HotCounter per value of a fixed label set; every series is present from the first scrape. */
function hotCounterVec<K extends string>(registry: client.Registry, name: string, help: string, label: string, keys: Record<K, string>): Record<K, HotCounter> {
  const out = {} as Record<K, HotCounter>;
  for (const k of Object.keys(keys) as K[]) out[k] = new HotCounter();
  new client.Counter({
    name, help, labelNames: [label], registers: [registry],
    collect() {
      this.reset();
      for (const k of Object.keys(keys) as K[]) this.inc({ [label]: keys[k] }, out[k].value);
    },
  });
  return out;
}

export class Metrics {
  readonly registry = new client.Registry();
  readonly connections: client.Gauge;
  readonly handshake: Record<HandshakeResult, HotCounter>;
  readonly eventsReceived: HotCounter;
  readonly eventsDelivered: HotCounter;
  readonly drop: Record<DropReason, HotCounter>;
  readonly bytesReceived: HotCounter;
  readonly bytesSent: HotCounter;
  readonly junkBytes: HotCounter;
  readonly latency: HotHistogram;
  readonly busUp: client.Gauge;
  readonly bus: Record<BusDirection, HotCounter>;
  readonly busIn: HotCounter;
  readonly busOut: HotCounter;
  readonly busErrors: HotCounter;
  readonly busGaps: HotCounter;
  readonly busUndecodable: HotCounter;
  readonly busSync: Record<BusSync, HotCounter>;
  readonly revokedSerials: client.Gauge;
  readonly certExpiry: client.Gauge<'cert'>;
  readonly crlNextUpdate: client.Gauge;
  readonly crlOk: client.Gauge;
  readonly crlCluster: client.Gauge;
  readonly crlClusterRejected: client.Counter;
  readonly sessionsClosed: client.Counter<'reason'>;
  readonly logDropped: HotCounter;
  readonly httpRefused: HotCounter;
  readonly readThrottled: HotCounter;
  /** read at scrape time: the size of the latest-SA cache (the router sets it) */
  saCacheSize: () => number = () => 0;
  /** read at scrape time: the other nodes heard on the bus (the Redis bus sets it) */
  busPeers: () => number = () => 0;
  readonly busNodesLost: client.Counter;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const r = this.registry;
    const registers = [r];
    if (opts.defaultMetrics !== false) {
      // prom-client's event-loop lag gauges are replaced by ours (looplag.ts: sampled every 100 ms and
      // meaning lag, not lag plus the sampling interval); its own sampler is set to once an hour
      client.collectDefaultMetrics({ register: r, eventLoopMonitoringPrecision: 3_600_000 });
      // gauges named *_total break the exposition conventions (promtool check metrics flags them);
      // the same values are in nodejs_active_{handles,requests,resources} by type.
      for (const n of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total', ...LOOP_LAG_METRICS]) r.removeSingleMetric(n);
      registerLoopLag(r);
    }
    this.connections = new client.Gauge({ name: 'cot_connections', help: 'Authenticated client sessions currently connected', registers });
    this.handshake = hotCounterVec(r, 'cot_handshakes_total', 'TLS connection attempts by result', 'result', HandshakeResult);
    this.eventsReceived = hotCounter(r, 'cot_events_received_total', 'CoT events received from clients (complete frames, before validation)');
    this.eventsDelivered = hotCounter(r, 'cot_events_delivered_total', 'CoT events written to clients (one per recipient)');
    this.drop = hotCounterVec(r, 'cot_events_dropped_total', 'CoT events dropped, by reason', 'reason', DropReason);
    this.bytesReceived = hotCounter(r, 'cot_bytes_received_total', 'Bytes received from clients (after TLS)');
    this.bytesSent = hotCounter(r, 'cot_bytes_sent_total', 'Bytes written to clients (before TLS)');
    this.junkBytes = hotCounter(r, 'cot_junk_bytes_total', 'Received bytes outside any CoT event, skipped');
    this.latency = new HotHistogram('cot_delivery_latency_seconds', 'Time from a frame received to its write to the local recipients (origin node only)', LATENCY_BUCKETS, r);
    this.busUp = new client.Gauge({ name: 'cot_bus_up', help: '1 when the message bus is connected (always 1 for the in-process bus)', registers });
    this.bus = hotCounterVec(r, 'cot_bus_messages_total', 'Bus messages by direction (out: published, in: received from other nodes)', 'direction', BusDirection);
    this.busIn = this.bus.in;
    this.busOut = this.bus.out;
    this.busErrors = hotCounter(r, 'cot_bus_publish_errors_total', 'Bus publishes that failed or were discarded while the bus was down');
    this.busGaps = hotCounter(r, 'cot_bus_gaps_total', 'Bus batches from other nodes that never arrived here (sequence gaps: outages, reconnects)');
    this.busUndecodable = hotCounter(r, 'cot_bus_undecodable_total', 'Messages on the bus channel that are not batches this node can read (corrupt, foreign, a newer codec version): ignored');
    this.busSync = hotCounterVec(r, 'cot_bus_sync_total', 'State syncs between nodes: asked (sync requests this node published: it joined or reconnected, or missed batches), answered (answers it published: its clients\' latest SAs), complete (complete answers it received from other nodes)', 'event', BusSync);
    const busPeers = (): number => this.busPeers();
    new client.Gauge({
      name: 'cot_bus_peers', help: 'Other nodes this node hears on the Redis bus (one silent for 3 heartbeats is dropped; all are kept while Redis itself is away): every node of an N-node cluster should show N-1',
      registers, collect() { this.set(busPeers()); },
    });
    this.busNodesLost = new client.Counter({ name: 'cot_bus_nodes_lost_total', help: 'Nodes that went silent on the bus for 3 heartbeats (crashed, frozen, cut off): their clients were announced disconnected here. A node stopped cleanly is not counted', registers });
    this.revokedSerials = new client.Gauge({ name: 'cot_revoked_serials', help: 'Certificate serials in the revocation list in force', registers });
    this.certExpiry = new client.Gauge({ name: 'cot_certificate_expiry_timestamp_seconds', help: 'notAfter of the CA and server certificates (unix seconds)', labelNames: ['cert'], registers });
    this.crlNextUpdate = new client.Gauge({ name: 'cot_crl_next_update_timestamp_seconds', help: 'next_update of the revocation list in force (unix seconds; 0 when none)', registers });
    this.crlOk = new client.Gauge({ name: 'cot_crl_ok', help: '1 while the revocation list in force is the file as read; 0 while the file is corrupt, unreadable or gone and an older list stays in force', registers });
    this.crlCluster = new client.Gauge({ name: 'cot_crl_cluster_timestamp_seconds', help: 'this_update of the CA-signed revocation list the Redis cluster shares, in force here beside --crl (unix seconds; 0 when none): every node should show the same', registers });
    this.crlClusterRejected = new client.Counter({ name: 'cot_crl_cluster_rejected_total', help: 'Revocation lists offered through Redis and refused: not an X.509 CRL, or not signed by our CA', registers });
    this.logDropped = hotCounter(r, 'cot_log_lines_dropped_total', 'Log lines dropped because stdout did not take them and --log-buffer was full');
    this.httpRefused = hotCounter(r, 'cot_http_connections_refused_total', 'Connections to the /metrics /healthz /readyz listener refused: over its connection limits (in all, per address)');
    this.readThrottled = hotCounter(r, 'cot_read_throttled_seconds_total', 'Time reading from clients was paused because they sent more than twice --rate-bytes (summed over clients)');
    const saCache = (): number => this.saCacheSize();
    new client.Gauge({
      name: 'cot_sa_cache_entries', help: 'Latest SAs cached for newcomers (clients of this node and of the others): follows the connected clients; one that only grows means SAs of clients gone are kept',
      registers, collect() { this.set(saCache()); },
    });
    this.sessionsClosed = new client.Counter({ name: 'cot_sessions_closed_total', help: 'Client sessions closed, by reason', labelNames: ['reason'], registers });
    // every reason exported from the start at 0, like the other counters: rate() and alerts on a
    // reason need its series before the first such close
    for (const k of Object.keys(CloseReason)) this.sessionsClosed.labels(k).inc(0);
    this.busUp.set(0);
    this.connections.set(0);
    this.revokedSerials.set(0);
    this.crlOk.set(1);
    this.crlCluster.set(0);
  }
}
