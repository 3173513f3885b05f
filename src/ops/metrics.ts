// Every metric of DESIGN.md §3 in one registry. Label values are fixed sets (reasons, results,
// directions): no label ever carries a callsign, uid, serial or IP. Hot-path code holds the
// pre-bound children (`inc()` on a child allocates nothing).
import client from 'prom-client';

export const HandshakeResult = {
  ok: 'ok', revoked: 'revoked', no_cert: 'no_cert', limit: 'limit', bad_cert: 'bad_cert', timeout: 'timeout', error: 'error',
} as const;
export type HandshakeResult = keyof typeof HandshakeResult;

export const DropReason = {
  slow_consumer: 'slow_consumer', rate_limit: 'rate_limit', oversize: 'oversize', malformed: 'malformed',
} as const;
export type DropReason = keyof typeof DropReason;

export class Metrics {
  readonly registry = new client.Registry();
  readonly connections: client.Gauge;
  readonly handshakes: client.Counter<'result'>;
  readonly handshake: Record<HandshakeResult, client.Counter.Internal>;
  readonly eventsReceived: client.Counter;
  readonly eventsDelivered: client.Counter;
  readonly dropped: client.Counter<'reason'>;
  readonly drop: Record<DropReason, client.Counter.Internal>;
  readonly bytesReceived: client.Counter;
  readonly bytesSent: client.Counter;
  readonly junkBytes: client.Counter;
  readonly latency: client.Histogram;
  readonly busUp: client.Gauge;
  readonly busMessages: client.Counter<'direction'>;
  readonly busIn: client.Counter.Internal;
  readonly busOut: client.Counter.Internal;
  readonly busErrors: client.Counter;
  readonly busGaps: client.Counter;
  readonly revokedSerials: client.Gauge;
  readonly certExpiry: client.Gauge<'cert'>;
  readonly crlNextUpdate: client.Gauge;
  readonly sessionsClosed: client.Counter<'reason'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) client.collectDefaultMetrics({ register: this.registry });
    this.connections = new client.Gauge({ name: 'cot_connections', help: 'Authenticated client sessions currently connected', registers });
    this.handshakes = new client.Counter({ name: 'cot_handshakes_total', help: 'TLS connection attempts by result', labelNames: ['result'], registers });
    this.handshake = bindAll(this.handshakes, HandshakeResult);
    this.eventsReceived = new client.Counter({ name: 'cot_events_received_total', help: 'CoT events received from clients', registers });
    this.eventsDelivered = new client.Counter({ name: 'cot_events_delivered_total', help: 'CoT events written to clients (one per recipient)', registers });
    this.dropped = new client.Counter({ name: 'cot_events_dropped_total', help: 'CoT events dropped, by reason', labelNames: ['reason'], registers });
    this.drop = bindAll(this.dropped, DropReason);
    this.bytesReceived = new client.Counter({ name: 'cot_bytes_received_total', help: 'Bytes received from clients (after TLS)', registers });
    this.bytesSent = new client.Counter({ name: 'cot_bytes_sent_total', help: 'Bytes written to clients (before TLS)', registers });
    this.junkBytes = new client.Counter({ name: 'cot_junk_bytes_total', help: 'Received bytes outside any CoT event, skipped', registers });
    this.latency = new client.Histogram({
      name: 'cot_delivery_latency_seconds',
      help: 'Time from a frame received to its write to the recipients',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.busUp = new client.Gauge({ name: 'cot_bus_up', help: '1 when the message bus is connected (always 1 for the in-process bus)', registers });
    this.busMessages = new client.Counter({ name: 'cot_bus_messages_total', help: 'Bus messages by direction', labelNames: ['direction'], registers });
    this.busIn = this.busMessages.labels('in');
    this.busOut = this.busMessages.labels('out');
    this.busErrors = new client.Counter({ name: 'cot_bus_publish_errors_total', help: 'Bus publishes that failed or were discarded while the bus was down', registers });
    this.busGaps = new client.Counter({ name: 'cot_bus_gaps_total', help: 'Bus batches from other nodes that never arrived here (sequence gaps: outages, reconnects)', registers });
    this.revokedSerials = new client.Gauge({ name: 'cot_revoked_serials', help: 'Certificate serials in the revocation list in force', registers });
    this.certExpiry = new client.Gauge({ name: 'cot_certificate_expiry_timestamp_seconds', help: 'notAfter of the CA and server certificates (unix seconds)', labelNames: ['cert'], registers });
    this.crlNextUpdate = new client.Gauge({ name: 'cot_crl_next_update_timestamp_seconds', help: 'next_update of the revocation list in force (unix seconds; 0 when none)', registers });
    this.sessionsClosed = new client.Counter({ name: 'cot_sessions_closed_total', help: 'Client sessions closed, by reason', labelNames: ['reason'], registers });
    this.busUp.set(0);
    this.connections.set(0);
  }
}

function bindAll<K extends string>(c: client.Counter<string>, keys: Record<K, string>): Record<K, client.Counter.Internal> {
  const out = {} as Record<K, client.Counter.Internal>;
  for (const k of Object.keys(keys) as K[]) {
    out[k] = c.labels(keys[k]);
    out[k].inc(0); // every series visible from the first scrape, so rate() and alerts work at once
  }
  return out;
}
