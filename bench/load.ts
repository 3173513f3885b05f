#!/usr/bin/env -S node --import tsx
// Load generator: N mutual-TLS clients against a running server (cotstream, the relay, anything
// that speaks streaming CoT), S of them senders at R events/s each, open loop. Every client reads
// and counts what it gets; each event carries a marker (generator, sender, step, sequence, send
// time) so loss, duplicates and latency are exact. See bench/README.md.
import tls from 'node:tls';
import net, { type OnReadOpts } from 'node:net';
import { randomInt } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import { benchCreds, ownCreds, readOptionFile, OWN_CERT_HINT } from './lib/certs.ts';
import { EventMaker, MARK, MARK_BYTE, markEndsAt, nowUs, readMark, type Mark } from './lib/event.ts';
import { Histogram } from './lib/hist.ts';
import { ProcWatch } from './lib/proc.ts';
import { fmt, textTable } from './lib/table.ts';

export interface LoadOptions {
  host: string;
  port: number;
  /** nodes of one cluster: clients are spread over these ports round-robin (client i on ports[i % n]) */
  ports?: number[];
  certsDir: string;
  /** client certificates in the pool (connections use them round-robin) */
  certs: number;
  /**
   * the tester's own credentials instead of the bench's (nothing issued, --certs-dir unused):
   * `ca` the server's CA (PEM; with certs-dir credentials it replaces the dir's CA for verifying
   * the server), and one client certificate every connection presents (PEM pair or a .p12)
   */
  ca?: string;
  clientCert?: string;
  clientKey?: string;
  clientP12?: string;
  p12Password?: string;
  /** TLS server name (SNI and the name the server certificate must hold); default: host (an IP address: its IP SAN) */
  servername?: string;
  /** seconds a TCP connect + TLS handshake may take (default 5) */
  connectTimeout?: number;
  /**
   * seconds a new connection must stay open when the server sends it nothing (default 1): a client
   * counts as connected once the server has sent it something (cotstream's t-x-takp-v announcement)
   * or it stayed open this long; a server that refuses a client certificate after a TLS 1.3
   * handshake closes it within a round trip
   */
  confirm?: number;
  /** seconds between each client's t-x-c-t pings (default 30; 0: none), as ATAK's keep the connection from --idle-timeout */
  ping?: number;
  /** Bearer token for --metrics-url (cotstream --metrics-token) */
  metricsToken?: string;
  /** aborts the run (Ctrl-C): the steps that finished are returned, `interrupted` set */
  signal?: AbortSignal;
  clients: number;
  senders: number;
  /** events/s per sender, one step per entry */
  rates: number[];
  /** seconds of sending per step */
  duration: number;
  /** seconds to wait for stragglers after a step before counting loss */
  grace: number;
  size: number;
  concurrency: number;
  serverPid: number;
  metricsUrl: string;
  /** seconds to hold the connections idle before measuring server RSS (connection runs) */
  hold: number;
  /** epoch ms at which the first step starts (to line up several generator processes) */
  startAt: number;
  genId: number;
  /** seconds of unreported sending at the first rate before the first step */
  warmup: number;
  /**
   * the warm-up lasts until this process and the server (serverPid) have run this many seconds: past
   * the start-up GCs of tsx's module-hooks thread (see SETTLE_WHY); ignored with startAt
   */
  settle: number;
  /** stop after the first step that is saturated (delivered < 85% of sent, any loss, or unsent events) */
  stopWhenSaturated: boolean;
}

export interface StepResult {
  step: number;
  ratePerSender: number;
  offeredEvents: number;
  offeredDeliveries: number;
  sent: number;
  notSent: number;
  deliveries: number;
  deliveriesPerSec: number;
  expected: number;
  received: number;
  loss: number;
  lossPct: number;
  dupes: number;
  echoes: number;
  late: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** p99 of the server's own cot_delivery_latency_seconds in this step (needs --metrics-url; NaN without) */
  serverP99Ms: number;
  serverCpuPct: number;
  /** server CPU time per delivery: robust to other work on the machine, unlike deliveries/s */
  serverCpuUsPerDelivery: number;
  serverPeakRssMiB: number;
  genCpuPct: number;
  sendLagMaxMs: number;
  /** events the server dropped in this step as slow_consumer / rate_limit (NaN: unknown, no or failed scrape) */
  serverDropsSlow: number;
  serverDropsRate: number;
  /** events the server dropped in this step, every reason of cot_events_dropped_total (NaN: unknown) */
  serverDrops: number;
  /** the same by reason (only reasons that moved); null when unknown */
  serverDropsByReason: Record<string, number> | null;
  /** clients closed during this step (by the server, or the network) */
  closed: number;
}

export interface LoadResult {
  host: string;
  port: number;
  clients: number;
  senders: number;
  receivers: number;
  size: number;
  connectSeconds: number;
  handshakesPerSec: number;
  connectFailures: number;
  serverCpuConnectPct: number;
  /** server CPU time per handshake (ms): robust to other work on the machine */
  serverCpuMsPerHandshake: number;
  genCpuConnectPct: number;
  serverRssBeforeMiB: number;
  serverRssConnectedMiB: number;
  serverRssPerConnKiB: number;
  steps: StepResult[];
  /** why this run's figures are not to be trusted (clients closed, nothing delivered): load.ts exits 2 */
  problems: string[];
  /** stopped by Ctrl-C (signal): `steps` holds those that finished */
  interrupted: boolean;
}

const SENDER_BACKLOG_LIMIT = 16 * 1024 * 1024;

/** per receiver, per source (generator, sender): delivery count and last sequence */
interface SrcState { n: number; last: number }

class Run {
  step = -1;
  sending = false;
  winDeliveries = 0;
  deliveries = 0;
  dupes = 0;
  echoes = 0;
  late = 0;
  /** distinct deliveries of this generator's own events in this step */
  ownReceived = 0;
  readonly hist = new Histogram();
  constructor(readonly genId: number) {}
}

/**
 * All receive buffers: each socket's reads are decrypted into this one buffer and handed to its
 * client synchronously (net/tls `onread`), so a receiver allocates nothing per read and skips the
 * readable-stream machinery. The generator must cost less per delivery than the server it measures.
 */
const READ_BUF = Buffer.allocUnsafe(65536);
const LT = 0x3c;

class BenchClient {
  readonly sources = new Map<number, SrcState>();
  /** the start of a marker cut by the end of the previous read (a copy: READ_BUF is reused) */
  private rest: Buffer | null = null;
  private readonly m: Mark = { gen: 0, sender: 0, step: 0, seq: 0, tUs: 0 };
  sock!: tls.TLSSocket;
  closed = false;
  /** the error the socket ended with, if any */
  err: (Error & { code?: string }) | null = null;
  /** the server has sent this client something (cotstream: its t-x-takp-v announcement) */
  gotData = false;
  /** performance.now() at the end of the TLS handshake */
  secureAt = 0;
  /** performance.now() when this client sends its next ping */
  nextPingAt = Infinity;
  /** sender state */
  maker: EventMaker | null = null;
  /** where in its period this sender's events fall, 0..1 (senders are spread over the period) */
  phase = 0;
  seq = 0;
  sentThisStep = 0;
  notSent = 0;

  constructor(readonly idx: number, private readonly run: Run) {}

  attach(sock: tls.TLSSocket): this {
    this.sock = sock;
    this.secureAt = performance.now();
    sock.on('close', () => { this.closed = true; });
    sock.on('error', (e) => { this.closed = true; this.err ??= e; });
    return this;
  }

  readonly onRead = (nread: number, buf: Buffer): boolean => {
    this.gotData = true;
    // a view of exactly the bytes read: memchr must not run on into stale bytes of READ_BUF
    if (this.rest === null) this.onData(buf.subarray(0, nread));
    else {
      const b = Buffer.concat([this.rest, buf.subarray(0, nread)]);
      this.rest = null;
      this.onData(b);
    }
    return true;
  };

  private onData(b: Buffer): void {
    const run = this.run;
    const now = nowUs();
    const m = this.m;
    const n = b.length;
    let p = 0;
    let i: number;
    while ((i = b.indexOf(MARK_BYTE, p)) >= 0) {
      if (!markEndsAt(b, i)) { p = i + 1; continue; }
      const end = readMark(b, i - MARK.length + 1, m, n);
      if (end < 0) { this.rest = Buffer.from(b.subarray(i - MARK.length + 1, n)); return; }
      p = end;
      if (m.step !== run.step) { run.late++; continue; }
      if (m.gen === run.genId && m.sender === this.idx) { run.echoes++; continue; }
      run.deliveries++;
      if (run.sending) run.winDeliveries++;
      run.hist.add(now - m.tUs);
      const key = m.gen * 65536 + m.sender;
      let s = this.sources.get(key);
      if (!s) { s = { n: 0, last: -1 }; this.sources.set(key, s); }
      if (m.seq <= s.last) { run.dupes++; continue; }
      s.last = m.seq;
      s.n++;
      if (m.gen === run.genId) run.ownReceived++;
    }
    // keep the tail only when it may be the start of a marker cut by the read boundary
    for (let j = Math.max(p, n - MARK.length + 1); j < n; j++) {
      if (b[j] !== LT) continue;
      let k = 1;
      while (j + k < n && b[j + k] === MARK[k]) k++;
      if (j + k === n) { this.rest = Buffer.from(b.subarray(j, n)); return; }
    }
  }
}

/** A TLS connect that took longer than --connect-timeout. */
class ConnectTimeout extends Error {
  readonly code = 'CONNECT_TIMEOUT';
  constructor(readonly stage: 'tcp' | 'tls', seconds: number) {
    super(`no ${stage === 'tcp' ? 'TCP connection' : 'TLS handshake'} within ${seconds} s (--connect-timeout)`);
  }
}

function connectOne(o: LoadOptions, ctx: tls.SecureContext, port: number, client: BenchClient, timeoutS: number): Promise<BenchClient> {
  return new Promise((resolve, reject) => {
    // tls.connect takes net's `onread` (Node docs); @types/node leaves it out of ConnectionOptions.
    // No servername: Node sends the host as SNI and checks the certificate against it (an IP
    // address against the certificate's IP SANs).
    const opts: tls.ConnectionOptions & { onread: OnReadOpts } = {
      host: o.host, port, secureContext: ctx, onread: { buffer: READ_BUF, callback: client.onRead }, ...(o.servername ? { servername: o.servername } : {}),
    };
    const sock = tls.connect(opts);
    let tcp = false;
    sock.once('connect', () => { tcp = true; });
    const done = () => { clearTimeout(timer); sock.off('error', fail); sock.off('close', closed); };
    const fail = (e: Error) => { done(); sock.destroy(); reject(e); };
    // the server closed without a TLS error (cotstream refusing over a limit, a TLS 1.2 server refusing the certificate)
    const closed = () => fail(Object.assign(new Error('the server closed the connection before the TLS handshake completed'), { code: 'ECONNRESET' }));
    const timer = setTimeout(() => fail(new ConnectTimeout(tcp ? 'tls' : 'tcp', timeoutS)), timeoutS * 1000);
    sock.once('error', fail);
    sock.once('close', closed);
    sock.once('secureConnect', () => { done(); sock.setNoDelay(true); resolve(client.attach(sock)); });
  });
}

/** Codes of a server certificate that does not verify (Node's, from OpenSSL's X509_V_ERR_*). */
const VERIFY_CODES = /^(UNABLE_TO_|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_|INVALID_CA|PATH_LENGTH_EXCEEDED|INVALID_PURPOSE|HOSTNAME_MISMATCH|ERR_TLS_CERT_ALTNAME_INVALID)/;

/** What a failed connect means, for a tester: the error and its likely cause. */
export function explainConnectError(e: Error & { code?: string }, o: Pick<LoadOptions, 'host' | 'port' | 'servername' | 'ca' | 'certsDir' | 'clientCert' | 'clientP12'>, port = o.port): string {
  const code = e.code ?? '';
  const where = `${o.host}:${port}`;
  const caFrom = o.ca ? `--ca ${o.ca}` : o.clientP12 ? `the CA in --client-p12 ${o.clientP12}` : `the CA of --certs-dir ${o.certsDir}`;
  if (e instanceof ConnectTimeout) {
    return e.stage === 'tcp'
      ? `${e.message}: nothing answers at ${where} (a firewall dropping packets, or the wrong address)`
      : `${e.message}: something accepted the TCP connection at ${where} but did not complete a TLS handshake (not a TLS server, a port that waits for a PROXY protocol header, or a server too busy to answer)`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const name = o.servername ?? o.host;
    return `the server's certificate does not name ${name} (${e.message}): give --servername with a name it holds${net.isIP(o.host) ? '' : ', or --host with its address if the certificate holds that'}`;
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return `the server's certificate is not valid now (${code}: ${e.message})`;
  if (VERIFY_CODES.test(code)) {
    return `the server's certificate did not verify against ${caFrom} (${code}: ${e.message}): give --ca the CA certificate that signed the server's certificate`;
  }
  if (code === 'ECONNREFUSED') return `nothing listens at ${where} (${e.message})`;
  if (code === 'EMFILE' || code === 'ENFILE') return `this process ran out of file descriptors (${e.message}): raise them with ulimit -n (bench/README.md, "File descriptors")`;
  if (code.startsWith('ERR_SSL_')) {
    if (/UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|DECRYPT_ERROR|UNSUPPORTED_CERTIFICATE/.test(code)) {
      return `the server refused the client certificate (${e.message}): it does not trust the CA that issued it, or it is not a client certificate`;
    }
    if (/CERTIFICATE_REVOKED/.test(code)) return `the server refused the client certificate as revoked (${e.message})`;
    if (/CERTIFICATE_EXPIRED/.test(code)) return `the server refused the client certificate as expired (${e.message})`;
    if (/CERTIFICATE_REQUIRED/.test(code)) return `the server wants a client certificate and got none (${e.message})`;
    return `TLS handshake failed (${e.message})`;
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return `${e.message}: the server closed the connection before or during the TLS handshake — a connection limit ` +
      '(cotstream: --max-clients-per-ip, default 64 at once and 64 new per second from one address; --max-clients), its file descriptors (ulimit -n), ' +
      'or a TLS 1.2 server refusing the client certificate (cotstream logs an audit "refused" line saying which)';
  }
  return `${e.message}${code ? ` (${code})` : ''} (ulimit -n? server limits such as --max-clients-per-ip?)`;
}

/** What one scrape of --metrics-url gives: the latency histogram and the drop counters by reason. */
interface Scrape {
  /** `cot_delivery_latency_seconds` buckets (cumulative count per upper bound, +Inf last), or null */
  buckets: Array<[number, number]> | null;
  /** `cot_events_dropped_total` by reason */
  drops: Record<string, number>;
}

/**
 * One scrape of cotstream's /metrics, or null without a URL or when it fails (the figures are then
 * unknown, not 0); `warn` is told why, once per distinct reason. Two scrapes give a step's drops and
 * in-server latency: from the server's read of an event to its write to the last recipient.
 */
async function scrape(url: string, token: string, warn: (why: string) => void): Promise<Scrape | null> {
  if (!url) return null;
  let text: string;
  try {
    const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5000) });
    if (!res.ok) {
      warn(res.status === 401 || res.status === 403
        ? `${url} answered ${res.status} ${res.statusText}: ${token ? 'the --metrics-token was refused' : 'it wants a token: give --metrics-token (or $COTSTREAM_METRICS_TOKEN)'}; server drops and in-server latency unknown`
        : `${url} answered ${res.status} ${res.statusText}: server drops and in-server latency unknown`);
      return null;
    }
    text = await res.text();
  } catch (err) {
    warn(`cannot read ${url}: ${(err as Error).message}; server drops and in-server latency unknown`);
    return null;
  }
  const buckets: Array<[number, number]> = [];
  for (const m of text.matchAll(/^cot_delivery_latency_seconds_bucket\{le="([^"]+)"\} (\S+)/gm)) {
    buckets.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
  }
  const drops: Record<string, number> = {};
  for (const m of text.matchAll(/^cot_events_dropped_total\{reason="([^"]+)"\} (\S+)/gm)) drops[m[1]] = Number(m[2]);
  if (!buckets.length && !text.includes('cot_events_dropped_total')) warn(`${url} has no cot_events_dropped_total: not a cotstream /metrics? server drops unknown`);
  return { buckets: buckets.length ? buckets : null, drops };
}

/** Drops between two scrapes by reason (only those that moved), or null when either is unknown. */
function dropsBetween(a: Scrape | null, b: Scrape | null): Record<string, number> | null {
  if (!a || !b || !Object.keys(b.drops).length) return null;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.drops)) if (v - (a.drops[k] ?? 0) !== 0) out[k] = v - (a.drops[k] ?? 0);
  return out;
}

/** quantile q (ms) of the observations between two scrapes, linear within a bucket (as Prometheus does) */
export function bucketQuantileMs(a: Array<[number, number]> | null, b: Array<[number, number]> | null, q: number): number {
  if (!a || !b || a.length !== b.length) return NaN;
  const total = b[b.length - 1][1] - a[a.length - 1][1];
  if (total <= 0) return NaN;
  const rank = q * total;
  let lo = 0;
  let below = 0;
  for (let i = 0; i < b.length; i++) {
    const [le, cum] = b[i];
    const c = cum - a[i][1];
    if (c >= rank) {
      if (le === Infinity) return lo * 1000;
      return (lo + (le - lo) * (c === below ? 1 : (rank - below) / (c - below))) * 1000;
    }
    lo = le;
    below = c;
  }
  return NaN;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

/** A ping as ATAK Commo sends it (protocol/samples/18-ping-atak-commo.xml): cotstream answers it to the sender only. */
function pingEvent(uid: string): string {
  const t = Date.now();
  const now = new Date(t).toISOString();
  return `<event version="2.0" uid="${uid}-ping" type="t-x-c-t" time="${now}" start="${now}" stale="${new Date(t + 10_000).toISOString()}" how="m-g">` +
    '<point lat="0.00000000" lon="0.00000000" hae="0.00000000" ce="9999999" le="9999999"/><detail/></event>';
}

/** The secure contexts the connections use round-robin: the tester's own certificate, or the bench's pool. */
async function contexts(o: LoadOptions, progress: (s: string) => void): Promise<tls.SecureContext[]> {
  if (o.clientCert || o.clientKey || o.clientP12) {
    const c = ownCreds(o);
    try {
      return [tls.createSecureContext(c)];
    } catch (err) {
      const m = (err as Error).message;
      throw new Error(o.clientP12
        ? `--client-p12 ${o.clientP12}: cannot open it (${m})${/mac verify/i.test(m) ? ': wrong password? it is read from $LOAD_P12_PASSWORD' : ''}`
        : `--client-cert ${o.clientCert} / --client-key ${o.clientKey}: ${m}`);
    }
  }
  const creds = await benchCreds(o.certsDir, o.certs, progress);
  // --ca alone: the server's certificate comes from another CA than the one issuing the bench's
  const ca = o.ca ? readOptionFile(o.ca, '--ca') : creds.ca;
  return creds.clients.map((c) => tls.createSecureContext({ ca, cert: c.cert, key: c.key }));
}

/** Why `closed` clients were closed (their errors, counted by code), for a message. */
function closeReasons(closed: BenchClient[]): string {
  const by = new Map<string, number>();
  for (const c of closed) {
    const k = c.err ? (c.err.code ?? c.err.message) : 'closed by the other end (no error)';
    by.set(k, (by.get(k) ?? 0) + 1);
  }
  return [...by].map(([k, n]) => `${n} ${k}`).join(', ');
}

export async function runLoad(o: LoadOptions, progress: (s: string) => void = () => {}): Promise<LoadResult> {
  if (o.senders > o.clients) throw new Error(`--senders (${o.senders}) cannot exceed --clients (${o.clients})`);
  const connectTimeout = o.connectTimeout ?? 5;
  const confirmMs = (o.confirm ?? 1) * 1000;
  const pingMs = (o.ping ?? 30) * 1000;
  const signal = o.signal;
  const sending = o.senders > 0 && o.rates.length > 0;
  let eventSize = o.size;
  if (sending) {
    // the largest sender index and this gen id make the longest uid, callsign and marker
    const last = o.senders - 1;
    const min = new EventMaker({ gen: o.genId, sender: last, uid: `bench-${o.genId}-${last}`, callsign: `B${o.genId % 1000}-${last}`, size: 0 }).size;
    if (o.size < min) {
      progress(`--size ${o.size} is below the smallest event this run makes: events are ${min} bytes (the SA and its marker without padding; the gen id and sender count set it)`);
      eventSize = min;
    }
  }
  const ctxs = await contexts(o, progress);
  const watch = new ProcWatch(o.serverPid);
  const run = new Run(o.genId);
  const clients: BenchClient[] = [];
  let pingTimer: NodeJS.Timeout | null = null;
  try {
    // ---- connect --------------------------------------------------------------------------
    const rssBefore = watch.sample();
    const sc0 = watch.cpu();
    const gc0 = process.cpuUsage();
    const t0 = performance.now();
    let next = 0;
    let failures = 0;
    let first: { err: Error & { code?: string }; port: number; idx: number } | null = null;
    let lastReport = t0;
    // a client closed before the server sent it anything: refused (seen in full once connecting is done)
    const refusedSoFar = () => clients.some((c) => c?.closed && !c.gotData);
    const worker = async () => {
      // the first failure or refusal stops the connecting: the other connections would meet the same
      // (a server that never answers would otherwise cost --connect-timeout per client)
      while (next < o.clients && first === null && !signal?.aborted) {
        const i = next++;
        const port = o.ports?.length ? o.ports[i % o.ports.length] : o.port;
        try {
          clients[i] = await connectOne(o, ctxs[i % ctxs.length], port, new BenchClient(i, run), connectTimeout);
        } catch (err) {
          failures++;
          first ??= { err: err as Error, port, idx: i };
        }
        const now = performance.now();
        if (now - lastReport > 1000) {
          lastReport = now;
          if (refusedSoFar()) break;
          progress(`connecting: ${clients.filter(Boolean).length}/${o.clients}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency, o.clients) }, worker));
    const connectSec = (performance.now() - t0) / 1000;
    const serverCpuConnect = (watch.cpu() - sc0) / connectSec * 100;
    const gcu = process.cpuUsage(gc0);
    const live = clients.filter(Boolean);
    if (signal?.aborted) throw new Error('interrupted while connecting');
    if (first !== null) {
      const f = first as { err: Error & { code?: string }; port: number; idx: number };
      throw new Error(`connecting failed (${failures} of ${o.clients} attempts failed; ${live.length} connected before it stopped): ${explainConnectError(f.err, o, f.port)}`);
    }
    // Connected = the server sent something (cotstream: its t-x-takp-v announcement, maybe after an
    // SA replay), or the connection stayed open --confirm seconds (a server that sends nothing to a
    // new client: the relay, cotstream --no-announce). TLS 1.3 ends the client's handshake before the
    // server has checked the client's certificate: a refusal arrives as a close right after it.
    while (!signal?.aborted) {
      const now = performance.now();
      if (live.every((c) => c.closed || c.gotData || now - c.secureAt >= confirmMs)) break;
      await sleep(10);
    }
    if (signal?.aborted) throw new Error('interrupted while connecting');
    const gone = live.filter((c) => c.closed);
    if (gone.length) {
      const refused = gone.filter((c) => !c.gotData);
      const who = o.clientCert ? `--client-cert ${o.clientCert}` : o.clientP12 ? `--client-p12 ${o.clientP12}` : `the bench certificates issued by the CA of --certs-dir ${o.certsDir}`;
      const alert = refused.find((c) => c.err?.code?.startsWith('ERR_SSL_'));
      throw new Error(refused.length
        ? `${refused.length} of ${live.length} connected clients were closed by the server right after the TLS handshake, before it sent them anything (${closeReasons(refused)}): ` +
          (alert ? explainConnectError(alert.err!, o) : 'the server refused them. ') +
          `Most likely their client certificate (${who}) is not trusted by the server: issued by a CA it does not trust, expired, or revoked ` +
          '(cotstream logs an audit "refused" line with the reason — bad_cert, revoked, no_cert — and counts it in cot_handshakes_total{result}). ' +
          'A TLS 1.3 client finishes its side of the handshake before the server has checked its certificate, so the refusal comes as a close. ' +
          `Otherwise a server limit refusing connections after the handshake.${o.clientCert || o.clientP12 ? '' : ` (${OWN_CERT_HINT}.)`}`
        : `${gone.length} of ${live.length} clients were closed by the server just after connecting (${closeReasons(gone)})`);
    }
    progress(`connected ${live.length} clients in ${connectSec.toFixed(2)} s (${fmt(live.length / connectSec)} handshakes/s)`);
    // every client pings, as ATAK does: a receiver that never sends would be closed by the server's
    // --idle-timeout (cotstream: 120 s); the first ping one period after the handshake
    if (pingMs > 0) {
      for (const c of live) c.nextPingAt = c.secureAt + pingMs;
      const uids = live.map((c) => `bench-${o.genId}-${c.idx}`);
      pingTimer = setInterval(() => {
        const now = performance.now();
        for (let i = 0; i < live.length; i++) {
          const c = live[i];
          if (c.closed || c.nextPingAt > now) continue;
          c.nextPingAt = now + pingMs;
          c.sock.write(pingEvent(uids[i]));
        }
      }, Math.min(1000, pingMs / 2));
      pingTimer.unref();
    }
    await sleep(o.hold * 1000);
    const rssConnected = watch.sample();
    const problems: string[] = [];
    let closedBefore = live.filter((c) => c.closed).length;
    if (closedBefore) problems.push(`${closedBefore} of ${live.length} clients were closed while held after connecting (${closeReasons(live.filter((c) => c.closed))})`);

    // ---- steps ----------------------------------------------------------------------------
    const senders = live.slice(0, o.senders);
    // Senders are devices with clocks of their own: their schedules are spread evenly over one period
    // (sender i of S sends i/S of a period after sender 0; another generator process is offset by its
    // id), not all in the same millisecond. In phase, S senders at R/s are one burst of S events every
    // 1/R s: at 500 receivers and 10 senders, 5,000 deliveries at once, whose queueing (in the server
    // and in this generator) then dominates the latency even at a few percent of CPU.
    const genPhase = (o.genId % 997) / 997;
    senders.forEach((s, i) => {
      s.maker = new EventMaker({ gen: o.genId, sender: s.idx, uid: `bench-${o.genId}-${s.idx}`, callsign: `B${o.genId % 1000}-${s.idx}`, size: eventSize });
      s.phase = ((i + genPhase) / senders.length) % 1;
    });
    if (o.startAt > 0 && o.rates.length) await sleep(Math.max(0, o.startAt - Date.now()));
    // The warm-up is sent, not slept: an idle Node process has its heap (young generation included)
    // shrunk by V8's memory reducer after ~8 s, and the next load starts by regrowing it.
    let warmup = o.warmup;
    if (sending && o.startAt === 0 && o.settle > 0) {
      const age = Math.min(process.uptime(), watch.ageSeconds() || Infinity);
      if (o.settle - age > warmup) {
        warmup = o.settle - age;
        progress(`warm-up of ${fmt(warmup, 1)} s: the first step waits until the generator and the server are ${fmt(o.settle)} s old (--settle)`);
      }
    }
    const steps: StepResult[] = [];
    const warned = new Set<string>();
    const warnOnce = (why: string) => { if (!warned.has(why)) { warned.add(why); progress(`warning: ${why}`); } };
    let rateHinted = false;
    // a warm-up step first (JIT, buffers, the server's first GCs), sent at the first rate and not
    // reported: without it the first step's tail latency measures start-up, not the server
    const warm = warmup > 0 && sending;
    for (let k = warm ? -1 : 0; k < o.rates.length && !signal?.aborted; k++) {
      const rate = o.rates[Math.max(0, k)];
      const duration = k < 0 ? warmup : o.duration;
      // markers carry a non-negative step number: the warm-up's is one no measured step uses
      const markStep = k < 0 ? o.rates.length : k;
      run.step = markStep;
      run.winDeliveries = run.deliveries = run.dupes = run.echoes = run.late = run.ownReceived = 0;
      run.hist.reset();
      for (const c of live) { c.sources.clear(); c.sentThisStep = 0; c.notSent = 0; }
      const m0 = await scrape(o.metricsUrl, o.metricsToken ?? '', warnOnce);
      watch.takePeak();
      const scpu0 = watch.cpu();
      const gcpu0 = process.cpuUsage();
      const start = performance.now();
      let lagMax = 0;
      run.sending = true;
      // open loop: every millisecond each sender writes whatever its schedule says is due by now
      await new Promise<void>((resolve) => {
        let lastProgress = start;
        const tick = () => {
          const now = performance.now();
          const el = Math.min(now - start, duration * 1000);
          const tUs = nowUs();
          const iso = new Date(tUs / 1000).toISOString();
          const stale = new Date(tUs / 1000 + 60_000).toISOString();
          for (const s of senders) {
            const due = Math.floor(el * rate / 1000 + s.phase) - s.sentThisStep - s.notSent;
            if (due <= 0 || s.closed) continue;
            // the schedule slipped by this much when the oldest due event goes out now
            const lag = el - (s.sentThisStep + s.notSent + 1 - s.phase) * 1000 / rate;
            if (lag > lagMax) lagMax = lag;
            if (s.sock.writableLength > SENDER_BACKLOG_LIMIT) { s.notSent += due; continue; }
            let out = '';
            for (let j = 0; j < due; j++) out += s.maker!.event(iso, stale, markStep, s.seq++, tUs);
            s.sock.write(out);
            s.sentThisStep += due;
          }
          if (now - lastProgress >= 1000) {
            lastProgress = now;
            progress(`${k < 0 ? 'warm-up' : `step ${k + 1}/${o.rates.length}`} ${fmt(rate * senders.length)} ev/s: delivered ${fmt(run.winDeliveries / ((now - start) / 1000))}/s, p99 ${fmt(run.hist.quantile(0.99) / 1000, 2)} ms`);
          }
          if (now - start >= duration * 1000 || signal?.aborted) { clearInterval(timer); resolve(); }
        };
        const timer = setInterval(tick, 1);
      });
      run.sending = false;
      const wall = (performance.now() - start) / 1000;
      const scpu = (watch.cpu() - scpu0) / wall * 100;
      const gcpu = process.cpuUsage(gcpu0);
      const winDeliveries = run.winDeliveries;
      const sent = senders.reduce((a, s) => a + s.sentThisStep, 0);
      const notSent = senders.reduce((a, s) => a + s.notSent, 0);
      const expected = sent * (live.length - 1);
      // grace: stragglers still in flight; stop early once everything arrived
      const graceEnd = performance.now() + o.grace * 1000;
      while (performance.now() < graceEnd && run.ownReceived < expected && !signal?.aborted) await sleep(25);
      if (signal?.aborted) break; // the step did not finish: not reported
      if (k < 0) { progress(`warm-up done (${fmt(warmup, 1)} s at ${fmt(rate * senders.length)} ev/s, not reported)`); continue; }
      const m1 = await scrape(o.metricsUrl, o.metricsToken ?? '', warnOnce);
      const drops = dropsBetween(m0, m1);
      const closedNow = live.filter((c) => c.closed);
      const h = run.hist;
      const r: StepResult = {
        step: k,
        ratePerSender: rate,
        offeredEvents: rate * senders.length,
        offeredDeliveries: rate * senders.length * (live.length - 1),
        sent,
        notSent,
        deliveries: run.deliveries,
        deliveriesPerSec: winDeliveries / wall,
        expected,
        received: run.ownReceived,
        loss: expected - run.ownReceived,
        lossPct: expected > 0 ? (expected - run.ownReceived) / expected * 100 : 0,
        dupes: run.dupes,
        echoes: run.echoes,
        late: run.late,
        p50Ms: h.quantile(0.5) / 1000,
        p90Ms: h.quantile(0.9) / 1000,
        p99Ms: h.quantile(0.99) / 1000,
        maxMs: h.max / 1000,
        serverP99Ms: bucketQuantileMs(m0?.buckets ?? null, m1?.buckets ?? null, 0.99),
        serverCpuPct: scpu,
        serverCpuUsPerDelivery: winDeliveries > 0 ? scpu / 100 * wall * 1e6 / winDeliveries : NaN,
        serverPeakRssMiB: watch.takePeak() / MiB,
        genCpuPct: (gcpu.user + gcpu.system) / 1000 / (wall * 1000) * 100,
        sendLagMaxMs: lagMax,
        serverDropsSlow: drops ? drops.slow_consumer ?? 0 : NaN,
        serverDropsRate: drops ? drops.rate_limit ?? 0 : NaN,
        serverDrops: drops ? Object.values(drops).reduce((a, v) => a + v, 0) : NaN,
        serverDropsByReason: drops,
        closed: closedNow.length - closedBefore,
      };
      closedBefore = closedNow.length;
      steps.push(r);
      progress(`step ${k + 1}/${o.rates.length} done: ${fmt(r.deliveriesPerSec)} deliveries/s, loss ${fmt(r.loss)}, dupes ${r.dupes}, p99 ${fmt(r.p99Ms, 2)} ms, server CPU ${fmt(r.serverCpuPct)}%, generator CPU ${fmt(r.genCpuPct)}%` +
        `${r.closed ? `, ${r.closed} clients closed` : ''}${r.serverDrops > 0 ? `, server dropped ${fmt(r.serverDrops)} events (${Object.entries(drops!).map(([why, n]) => `${why} ${fmt(n)}`).join(', ')})` : ''}`);
      if (r.closed > 0) {
        problems.push(`step ${k + 1}: ${r.closed} of ${live.length} clients were closed during the step (${closeReasons(closedNow)}): the server stopped, or closed them ` +
          '(cotstream logs each "closed" with its reason: slow_consumer, idle, revoked, shutdown); the events they could not receive count as loss');
      }
      if (sent > 0 && expected > 0 && r.received === 0) {
        problems.push(`step ${k + 1}: ${fmt(sent)} events sent and none delivered to the other ${live.length - 1} clients: the server is not relaying them ` +
          '(a server that does not route between these clients, or drops everything: see its drop counters and logs)');
      }
      if (r.serverDropsRate > 0 && !rateHinted) {
        rateHinted = true;
        progress(`the server dropped ${fmt(r.serverDropsRate)} events as rate_limit: its per-client limit is below the ${fmt(rate)} events/s each sender offers ` +
          '(cotstream --rate-events, default 100/s, --rate-burst 500, --rate-bytes 1 MiB/s): for a bench start it with --rate-events 0 --rate-bytes 0 (bench/README.md, "Server settings for benches")');
      }
      // judged against what was actually sent: a low fractional rate sends fewer events than rate x duration
      const saturated = r.deliveriesPerSec < 0.85 * (sent * (live.length - 1) / wall) || r.loss > 0 || r.notSent > 0;
      if (r.genCpuPct > 90) progress('warning: the generator used over 90% of a core: it may be the bottleneck (spread it over processes, see bench/README.md)');
      if (r.closed > 0 && k + 1 < o.rates.length) { progress(`${r.closed} clients closed: remaining steps skipped (their figures would mean nothing)`); break; }
      if (saturated && o.stopWhenSaturated) { progress('saturated: remaining steps skipped'); break; }
    }
    if (!sending) {
      const closedNow = live.filter((c) => c.closed).length - closedBefore;
      if (closedNow > 0) problems.push(`${closedNow} of ${live.length} clients were closed while held (${closeReasons(live.filter((c) => c.closed))})`);
    }

    const perConn = (rssConnected - rssBefore) / 1024 / live.length;
    if (perConn <= 0) progress('server RSS did not grow while connecting (its heap shrank by as much: a GC): no per-connection figure; more clients or a longer --hold give one');
    return {
      host: o.host,
      port: o.port,
      clients: live.length,
      senders: senders.length,
      receivers: live.length - senders.length,
      size: sending ? eventSize : o.size,
      connectSeconds: connectSec,
      handshakesPerSec: live.length / connectSec,
      connectFailures: failures,
      serverCpuConnectPct: serverCpuConnect,
      serverCpuMsPerHandshake: serverCpuConnect / 100 * connectSec * 1000 / live.length,
      genCpuConnectPct: (gcu.user + gcu.system) / 1000 / (connectSec * 1000) * 100,
      serverRssBeforeMiB: rssBefore / MiB,
      serverRssConnectedMiB: rssConnected / MiB,
      serverRssPerConnKiB: perConn > 0 ? perConn : NaN,
      steps,
      problems,
      interrupted: signal?.aborted ?? false,
    };
  } finally {
    watch.stop();
    if (pingTimer) clearInterval(pingTimer);
    for (const c of clients) c?.sock.destroy();
  }
}

export function resultTable(r: LoadResult): string {
  // loss and dupes count deliveries (an event times its recipients); the server's drops count events
  const rows = [['ev/s offered', 'deliv/s', 'loss (deliv)', 'dupes', 'closed', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'in-srv p99 ms', 'srv CPU%', 'srv µs/deliv', 'srv RSS MiB', 'gen CPU%', 'srv drops (events)']];
  for (const s of r.steps) {
    const by = s.serverDropsByReason ? Object.entries(s.serverDropsByReason).map(([why, n]) => `${why} ${fmt(n)}`).join(', ') : '';
    rows.push([fmt(s.offeredEvents), fmt(s.deliveriesPerSec), fmt(s.loss), fmt(s.dupes), fmt(s.closed), fmt(s.p50Ms, 2), fmt(s.p90Ms, 2), fmt(s.p99Ms, 2), fmt(s.maxMs, 1), fmt(s.serverP99Ms, 2),
      fmt(s.serverCpuPct), fmt(s.serverCpuUsPerDelivery, 2), fmt(s.serverPeakRssMiB, 1), fmt(s.genCpuPct), `${fmt(s.serverDrops)}${by ? ` (${by})` : ''}`]);
  }
  const head = `${r.clients} clients (${r.senders} senders, ${r.receivers} receivers), ${r.size}-byte events: ` +
    `connected in ${fmt(r.connectSeconds, 2)} s = ${fmt(r.handshakesPerSec)} handshakes/s; server RSS ${fmt(r.serverRssBeforeMiB, 1)} -> ${fmt(r.serverRssConnectedMiB, 1)} MiB ` +
    `(${fmt(r.serverRssPerConnKiB, 1)} KiB/connection)\n`;
  return head + (r.steps.length ? textTable(rows) : '') +
    (r.steps.length ? 'loss: deliveries not received (events x recipients); srv drops: events the server counted as dropped (cot_events_dropped_total, — = unknown: no --metrics-url or a failed scrape)\n' : '');
}

/**
 * Why the first step waits (--settle). tsx runs its ESM hooks on a worker thread; V8's memory reducer
 * collects that thread's heap three times, 8 to 9.5 s after the process starts (4–13 ms each). With the
 * process pinned to one core those collections take the core from the event loop, so every receiver is
 * late together: measured at 100 receivers x 1 sender, 8,000 ev/s, p99 12–15 ms when the step overlapped
 * them and 5–9 ms when it started after them (4 alternating pairs). A start-up cost, not the steady state.
 * The wait is spent sending (a longer warm-up), not idle: an idle server's heap is shrunk by the same
 * memory reducer, and a half-saturation run that began after 9 idle seconds had a warm-up p99 of 195 ms
 * and a first-second p99 of 45 ms at 10 receivers.
 */
const SETTLE_WHY = 'the warm-up (at the first rate) lasts until the generator and --server-pid have run this long: tsx\'s module-hooks thread does three start-up GCs 8–9.5 s after start, which stall a process pinned to one core (ignored with --start-at)';

function num(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: expected a non-negative number, got "${v}"`);
    return n;
  };
}

export function buildProgram(): Command {
  return new Command('load')
    .description('open N mutual-TLS CoT clients, make S of them send at R events/s each (open loop), measure deliveries, loss, duplicates and latency')
    .option('--host <addr>', 'server address', '127.0.0.1')
    .requiredOption('--port <n>', 'server TLS port', num('--port'))
    .addOption(new Option('--ports <list>', 'several nodes of one cluster: spread the clients over these ports round-robin (overrides --port)').argParser((v) => v.split(',').map(num('--ports'))))
    .option('--servername <name>', 'TLS server name: sent as SNI, and the name the server\'s certificate must hold (default: --host; for an IP address, no SNI and its IP SAN is checked)')
    .option('--certs-dir <dir>', 'a cotstream PKI whose CA key issues the bench client certificates (into <dir>/bench-clients); created only when it is the repository\'s own certs/', 'certs')
    .option('--certs <n>', 'client certificates in the pool, used round-robin (issued when missing)', num('--certs'), 8)
    .option('--ca <file>', 'the CA certificate (PEM) that signed the server\'s certificate (default: the CA of --certs-dir, or the one in --client-p12)')
    .option('--client-cert <file>', 'connect every client with this client certificate (PEM; with --client-key and --ca): nothing issued, --certs-dir unused')
    .option('--client-key <file>', 'the key of --client-cert (PEM, unencrypted)')
    .option('--client-p12 <file>', 'connect every client with the certificate and key in this .p12 (a cotstream/ATAK client .p12; password in $LOAD_P12_PASSWORD); --ca optional when it holds the CA')
    .option('-n, --clients <n>', 'connections to open', num('--clients'), 11)
    .option('-s, --senders <n>', 'how many of them send (the others only receive; senders receive too)', num('--senders'), 1)
    .addOption(new Option('-r, --rate <list>', 'events/s per sender; a comma-separated list runs one step per rate').default([100]).argParser((v) => v.split(',').map(num('--rate'))))
    .option('-d, --duration <s>', 'seconds of sending per step', num('--duration'), 5)
    .option('--warmup <s>', 'seconds of sending at the first rate before the first step, not reported (JIT, first GCs)', num('--warmup'), 2)
    .option('--settle <s>', SETTLE_WHY, num('--settle'), 10)
    .option('--grace <s>', 'seconds to wait for late events before counting loss', num('--grace'), 2)
    .option('--size <bytes>', 'event size; at least the SA and its marker without padding (~590–610 bytes: a smaller size is raised to it, with a warning)', num('--size'), 600)
    .option('--concurrency <n>', 'handshakes in flight while connecting', num('--concurrency'), 32)
    .option('--connect-timeout <s>', 'seconds a TCP connect + TLS handshake may take before the run fails', num('--connect-timeout'), 5)
    .option('--confirm <s>', 'a client counts as connected once the server sent it something (cotstream: its t-x-takp-v announcement) or it stayed open this long (a server that sends nothing: the relay, --no-announce); a client closed before is refused', num('--confirm'), 1)
    .option('--ping <s>', 'every client sends a t-x-c-t ping this often, as ATAK does, so the server\'s --idle-timeout (cotstream: 120 s) does not close the receivers; 0 = never', num('--ping'), 30)
    .option('--server-pid <pid>', 'server process to report CPU % and peak RSS of (Linux /proc)', num('--server-pid'), 0)
    .option('--metrics-url <url>', 'cotstream /metrics URL: report the server-counted drops (events, by reason) and its own latency per step', '')
    .option('--metrics-token <token>', 'Bearer token for --metrics-url (cotstream --metrics-token; default $COTSTREAM_METRICS_TOKEN, better: flags show in ps)')
    .option('--hold <s>', 'seconds to hold the connections before measuring server RSS', num('--hold'), 0.5)
    .option('--start-at <epoch-ms>', 'start the first step at this time (lines up several generator processes)', num('--start-at'), 0)
    .option('--gen-id <n>', 'generator id in the markers (default random; give each process its own)', num('--gen-id'))
    .option('--stop-when-saturated', 'skip the remaining steps after one that delivered under 85% of what it sent, lost events, or could not send', false)
    .option('--json', 'print the result as JSON on stdout instead of a table', false)
    .option('-q, --quiet', 'no progress lines on stderr', false)
    .addHelpText('after', `
Exit status: 0 the run is sound; 1 it failed (a connection failed, timed out, or was refused: the
message says why); 2 it ran but its figures are not to be trusted (clients closed during a step,
or a step sent events and none was delivered: said on stderr, the table or JSON still printed);
130 interrupted (Ctrl-C: the steps that finished are printed). See bench/README.md.`);
}

async function main(): Promise<void> {
  const cmd = buildProgram();
  cmd.parse(process.argv);
  const f = cmd.opts();
  const ac = new AbortController();
  const o: LoadOptions = {
    host: f.host, port: f.port, ports: f.ports, certsDir: f.certsDir, certs: Math.max(1, f.certs), clients: f.clients, senders: f.senders,
    ca: f.ca, clientCert: f.clientCert, clientKey: f.clientKey, clientP12: f.clientP12, p12Password: process.env.LOAD_P12_PASSWORD,
    servername: f.servername, connectTimeout: f.connectTimeout, confirm: f.confirm, ping: f.ping, metricsToken: f.metricsToken ?? process.env.COTSTREAM_METRICS_TOKEN ?? '', signal: ac.signal,
    rates: f.rate, duration: f.duration, warmup: f.warmup, settle: f.settle, grace: f.grace, size: f.size, concurrency: Math.max(1, f.concurrency), serverPid: f.serverPid,
    metricsUrl: f.metricsUrl, hold: f.hold, startAt: f.startAt, genId: f.genId ?? randomInt(1, 100_000),
    stopWhenSaturated: f.stopWhenSaturated,
  };
  if (o.senders === 0) o.rates = [];
  if (o.connectTimeout! <= 0) throw new Error('--connect-timeout: must be above 0');
  const t = process.hrtime.bigint();
  const progress = f.quiet ? () => {} : (s: string) => process.stderr.write(`[load ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(1)}s] ${s}\n`);
  // Ctrl-C: stop, print the steps that finished; a second one exits at once
  process.once('SIGINT', () => {
    process.stderr.write('load: interrupted: stopping after the steps that finished (Ctrl-C again to quit now)\n');
    ac.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  const r = await runLoad(o, progress);
  process.stdout.write(f.json ? JSON.stringify(r) + '\n' : resultTable(r));
  if (r.interrupted) {
    process.stderr.write(`load: interrupted: ${r.steps.length} of ${o.rates.length} step(s) finished\n`);
    process.exit(130);
  }
  if (r.problems.length) {
    process.stderr.write(`load: these figures are not to be trusted:\n${r.problems.map((p) => `  - ${p}\n`).join('')}`);
    process.exit(2);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then(() => process.exit(0), (err: Error) => { process.stderr.write(`load: ${err.message}\n`); process.exit(/^interrupted/.test(err.message) ? 130 : 1); });
}
