// The mutual-TLS CoT listener (and the opt-in plaintext one). Connection limits are enforced on
// the raw TCP socket before any TLS work; handshake failures are classified, counted and logged.
import tls from 'node:tls';
import net, { type BlockList } from 'node:net';
import { constants as cryptoConstants } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Metrics, HandshakeResult } from '../ops/metrics.ts';
import { LogLimiter, type Logger } from '../ops/log.ts';
import { cnOfSubject, identityFromSocket, remoteOf } from '../auth/identity.ts';
import { addressAllowed } from './addresses.ts';
import { peerOf, readProxyHeader } from './proxy.ts';

export interface ListenerOptions {
  host: string;
  port: number;
  key: Buffer;
  cert: Buffer;
  ca: Buffer;
  handshakeTimeout: number;
  maxClients: number;
  maxClientsPerIp: number;
  /** load balancers whose connections start with a PROXY protocol header (null: none) */
  proxyFrom: BlockList | null;
  /** the limit on refusal lines, shared with the server's other refusals (one 20 lines/s in all) */
  refusedLog?: LogLimiter;
}

/** Which limit refused a connection. */
export type LimitHit = 'clients' | 'per_ip' | 'rate';

/** addresses whose connection rate is tracked at once; past it, new addresses are not rate limited
 *  (memory stays bounded whatever the number of addresses an attacker has) */
const MAX_RATE_ENTRIES = 65536;
/** full buckets are forgotten every this many acquisitions */
const PRUNE_EVERY = 4096;
/**
 * ... and this long after a connection closed, again until none is left: a bucket is full a second
 * after its last take, so once the connections stop the map empties instead of keeping every
 * address of the last burst until 4096 more connections come (the soak run left 566 after one
 * minute of churn from many addresses, for good).
 */
const PRUNE_AFTER_MS = 1100;
function pruneLater(l: ConnectionLimiter): void { l.pruneIdle(); }

/**
 * Counts open connections (handshaking ones too) in total and per IP, and the rate of new
 * connections per IP: at most `ratePerIp` a second, after a burst of as many (0: no rate limit).
 * A TLS handshake costs the server 1-2 ms of CPU before the client has proved anything: one
 * address connecting and disconnecting in a loop (no certificate needed) took half a core at
 * ~570 handshakes/s, while the open-connection limit never saw more than a few at once.
 */
export class ConnectionLimiter {
  private total = 0;
  private readonly perIp = new Map<string, number>();
  private readonly rates = new Map<string, { tokens: number; at: number }>();
  private acquired = 0;
  private pruneTimer: NodeJS.Timeout | null = null;
  constructor(private readonly maxTotal: number, private readonly maxPerIp: number, private readonly ratePerIp = 0) {}

  /** Reserve a slot; returns null, or the limit that refuses it. */
  acquire(ip: string, now = performance.now()): LimitHit | null {
    const n = this.perIp.get(ip) ?? 0;
    if (this.maxTotal > 0 && this.total >= this.maxTotal) return 'clients';
    if (this.maxPerIp > 0 && n >= this.maxPerIp) return 'per_ip';
    if (this.ratePerIp > 0 && !this.takeRate(ip, now)) return 'rate';
    this.total++;
    this.perIp.set(ip, n + 1);
    return null;
  }

  private takeRate(ip: string, now: number): boolean {
    const r = this.ratePerIp;
    if (++this.acquired % PRUNE_EVERY === 0) this.prune(now);
    const b = this.rates.get(ip);
    if (b === undefined) {
      if (this.rates.size >= MAX_RATE_ENTRIES) this.prune(now);
      if (this.rates.size < MAX_RATE_ENTRIES) this.rates.set(ip, { tokens: r - 1, at: now });
      return true;
    }
    b.tokens = Math.min(r, b.tokens + ((now - b.at) / 1000) * r);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forget the addresses whose bucket has filled up again (they are as new). */
  private prune(now: number): void {
    const r = this.ratePerIp;
    for (const [ip, b] of this.rates) if (b.tokens + ((now - b.at) / 1000) * r >= r) this.rates.delete(ip);
  }

  release(ip: string): void {
    this.total--;
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
    this.armPrune();
  }

  private armPrune(): void {
    if (this.rates.size === 0 || this.pruneTimer !== null) return;
    this.pruneTimer = setTimeout(pruneLater, PRUNE_AFTER_MS, this);
    this.pruneTimer.unref();
  }

  /** @internal (pruneLater) */
  pruneIdle(): void {
    this.pruneTimer = null;
    this.prune(performance.now());
    this.armPrune();
  }

  get open(): number { return this.total; }
  /** addresses whose connection rate is being tracked */
  get tracked(): number { return this.rates.size; }
}

/**
 * Map a handshake that failed at the TLS level (timeout, protocol error, a client that gave up)
 * to the `cot_handshakes_total` result label. Certificates that fail verification complete the
 * handshake and are refused in 'secureConnection' (createTlsListener); `authorizationError` is
 * still read here for a client that hangs up in between.
 */
export function classifyHandshakeError(err: Error & { code?: string }, authorizationError?: string | Error | null): HandshakeResult {
  const authz = authorizationError ? String((authorizationError as Error).message ?? authorizationError) : '';
  if (authz) return /REVOKED/i.test(authz) ? 'revoked' : 'bad_cert';
  const code = err.code ?? '';
  const msg = err.message ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'timeout';
  // an alert received: the client refused the handshake (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA is a device
  // that does not trust our certificate), nothing wrong with its own certificate
  if (/ALERT/i.test(code) || /\balert\b/i.test(msg)) return 'error';
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED|peer did not return a certificate/i.test(code + msg)) return 'no_cert';
  if (/CERTIFICATE_VERIFY_FAILED|certificate verify failed|UNKNOWN_CA|BAD_CERTIFICATE|UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED|CERT_REVOKED|certificate revoked/i.test(code + msg)) {
    return /revoked/i.test(code + msg) ? 'revoked' : 'bad_cert';
  }
  return 'error';
}

/**
 * The log message of a handshake that failed for no reason of ours ('error'): most often the
 * client gave up on it, and the likeliest cause in the field is a device whose truststore does not
 * hold the CA of our certificate (a wrong data package). Java/OpenSSL clients say so with an
 * alert; Node's close without one.
 */
export function failureText(err: Error & { code?: string }): string {
  const s = `${err.code ?? ''} ${err.message ?? ''}`;
  if (/alert/i.test(s)) return 'TLS handshake failed: the client refused it with a TLS alert (err); "unknown ca", "bad certificate" or "certificate unknown" mean it does not trust this server\'s certificate: check the truststore in its data package';
  if (/ECONNRESET|EPIPE|ECONNABORTED|socket hang up|disconnected before secure/i.test(s)) return 'TLS handshake not completed: the client closed the connection (a device that gave up waiting, e.g. on a busy server; when one device does it every time, it may not trust this server\'s certificate: check the truststore in its data package)';
  return 'TLS handshake failed';
}

const LIMIT_TEXT: Record<LimitHit, string> = {
  clients: 'connection limit (--max-clients)',
  per_ip: 'connections from this address (--max-clients-per-ip)',
  rate: 'new connections per second from this address (--max-clients-per-ip)',
};

const remoteKey = Symbol('cotstream.remote');
const ipKey = Symbol('cotstream.ip');

type Tagged = net.Socket & { [remoteKey]?: string; [ipKey]?: string };

export interface TlsListenerHooks {
  /** a client completed mutual TLS with a certificate from our CA */
  onSecure(sock: tls.TLSSocket): void;
}

/** CN of the issuer of the peer certificate ('' when none): tells "another CA" from "our CA, expired". */
function issuerCn(sock: tls.TLSSocket): string {
  const cert = sock.getPeerX509Certificate();
  return cert ? cnOfSubject(cert.issuer) : '';
}

/** the suites the listener accepts (createTlsListener) */
const CIPHERS = [
  'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * The listener to listen on: a TCP server that admits each connection under the limits and hands
 * it to the TLS server; with --proxy-protocol it first reads the PROXY header of connections from
 * the load balancers (the limits then apply to the client address it names).
 */
export function createTlsListener(o: ListenerOptions, limiter: ConnectionLimiter, metrics: Metrics, log: Logger, hooks: TlsListenerHooks): net.Server {
  const limitedLog = o.refusedLog ?? new LogLimiter(log);
  const server = tls.createServer({
    key: o.key,
    cert: o.cert,
    ca: o.ca,
    requestCert: true,
    // The chain is still verified on every handshake; only the refusal is ours (in
    // 'secureConnection' below, before any CoT byte is read): Node's own refusal destroys the
    // socket before anyone can read the certificate, and an operator needs to know WHICH device
    // came with an expired certificate or one from another CA, not just its address.
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    // forward secrecy and authenticated encryption only: TLS 1.3's suites, and for TLS 1.2 ECDHE
    // with AES-GCM or ChaCha20, which Android (ATAK), Windows 10/11 SChannel (WinTAK) and iOS
    // (iTAK) all offer. Node's default list also takes static-RSA and CBC-SHA1 suites.
    ciphers: CIPHERS,
    honorCipherOrder: true,
    handshakeTimeout: o.handshakeTimeout > 0 ? o.handshakeTimeout : undefined,
    // No resumption: every connection presents its certificate and has it verified now. A TLS 1.3
    // ticket (resumable for 2 h) would carry the identity of a certificate that may have expired
    // since; Node keeps no TLS 1.2 session cache of its own. (sessionTimeout: 0 did not turn
    // tickets off: Node ignores a falsy value.)
    // and no renegotiation (TLS 1.2): nothing a TAK client needs, a CPU cost a client could repeat
    secureOptions: cryptoConstants.SSL_OP_NO_TICKET | cryptoConstants.SSL_OP_NO_RENEGOTIATION,
  });
  // one close listener for every socket (not a closure per connection: idle connections are many)
  function releaseSlot(this: Tagged): void { limiter.release(this[ipKey]!); }
  /**
   * Admission: the limits are checked on the raw TCP socket before the TLS server sees it — the
   * TLS server makes its TLS socket (an OpenSSL session) in its own 'connection' listener, so a
   * connection refused there would have cost that first. Refused: counted, logged, destroyed.
   */
  const admit = (raw: net.Socket): void => {
    raw.setNoDelay(true);
    const ip = peerOf(raw).address ?? '?';
    // remembered now: once the handshake fails the socket no longer knows its peer
    (raw as Tagged)[remoteKey] = remoteOf(raw);
    const hit = limiter.acquire(ip);
    if (hit !== null) {
      metrics.handshake.limit.inc();
      if (limitedLog.allow()) log.warn({ audit: 'refused', reason: 'limit', limit: hit, remote: (raw as Tagged)[remoteKey], open: limiter.open }, `connection refused: ${LIMIT_TEXT[hit]}`);
      raw.destroy();
      return;
    }
    (raw as Tagged)[ipKey] = ip;
    raw.on('close', releaseSlot);
    server.emit('connection', raw);
  };
  server.on('tlsClientError', (err: Error & { code?: string }, sock: tls.TLSSocket) => {
    const raw = (sock as unknown as { _parent?: Tagged })._parent;
    const authz = (sock as unknown as { authorizationError?: string }).authorizationError;
    const result = classifyHandshakeError(err, authz);
    metrics.handshake[result].inc();
    if (limitedLog.allow()) {
      log.warn({ audit: 'refused', reason: result, remote: raw?.[remoteKey] ?? remoteOf(sock), code: authz ?? err.code, err: err.message }, result === 'error' ? failureText(err) : result === 'timeout' ? `TLS handshake not completed within --handshake-timeout (${o.handshakeTimeout} ms): connection closed` : 'TLS handshake refused');
    }
    sock.destroy();
  });
  server.on('secureConnection', (sock: tls.TLSSocket) => {
    if (sock.authorized) { hooks.onSecure(sock); return; }
    // Not verified against our CA (or no certificate at all): refused here, with whatever the
    // client presented. The socket is destroyed before any listener could read from it.
    const id = identityFromSocket(sock);
    const result: HandshakeResult = id.serial === '' ? 'no_cert' : 'bad_cert';
    metrics.handshake[result].inc();
    if (limitedLog.allow()) {
      const err = sock.authorizationError as unknown;
      // without a certificate OpenSSL still reports one (UNABLE_TO_GET_ISSUER_CERT): not shown, it
      // would send the operator looking for an issuer problem
      const code = id.serial === '' ? undefined : typeof err === 'string' ? err : (err as Error | null)?.message ?? '';
      const issuer = id.serial === '' ? undefined : issuerCn(sock);
      log.warn({ audit: 'refused', reason: result, cn: id.cn || undefined, serial: id.serial || undefined, issuer, remote: id.remote, code },
        result === 'no_cert' ? 'TLS client refused: no client certificate' : `TLS client refused: certificate not valid for this server (${code})`);
    }
    sock.destroy();
  });
  const proxyFrom = o.proxyFrom;
  const listener = proxyFrom === null ? net.createServer(admit) : net.createServer((sock) => {
    if (!addressAllowed(proxyFrom, sock.remoteAddress)) { admit(sock); return; }
    readProxyHeader(sock, o.handshakeTimeout, admit, (err) => {
      const result: HandshakeResult = err === 'timeout' ? 'timeout' : 'error';
      metrics.handshake[result].inc();
      if (limitedLog.allow()) {
        log.warn({ audit: 'refused', reason: result, remote: remoteOf(sock), err: err === 'timeout' ? `no PROXY protocol header within ${o.handshakeTimeout} ms` : err.message },
          'connection from a load balancer refused: it must start with a PROXY protocol header (--proxy-protocol)');
      }
    });
  });
  tlsOf.set(listener, server);
  return listener;
}

/** the TLS server behind each listener createTlsListener made */
const tlsOf = new WeakMap<net.Server, tls.Server>();

/**
 * New server certificate, key and CA for the connections that come after (a renewed certificate
 * without a restart); connections already up keep theirs. Throws, changing nothing, when the
 * material does not make a valid context (a key that is not the certificate's, say).
 */
export function setListenerCredentials(listener: net.Server, creds: { key: Buffer; cert: Buffer; ca: Buffer }): void {
  const server = tlsOf.get(listener);
  if (!server) throw new Error('not a TLS listener');
  tls.createSecureContext({ key: creds.key, cert: creds.cert, ca: creds.ca }); // validate first: throws on a mismatch
  server.setSecureContext({ key: creds.key, cert: creds.cert, ca: creds.ca });
}

/** Opt-in plaintext CoT listener: no authentication at all, for legacy devices on trusted networks. */
export function createTcpListener(limiter: ConnectionLimiter, metrics: Metrics, log: Logger, onSocket: (sock: net.Socket) => void, limitedLog = new LogLimiter(log)): net.Server {
  return net.createServer((sock) => {
    sock.setNoDelay(true);
    const ip = sock.remoteAddress ?? '?';
    const hit = limiter.acquire(ip);
    if (hit !== null) {
      metrics.handshake.limit.inc();
      if (limitedLog.allow()) log.warn({ audit: 'refused', reason: 'limit', limit: hit, remote: remoteOf(sock) }, `plaintext connection refused: ${LIMIT_TEXT[hit]}`);
      sock.destroy();
      return;
    }
    sock.once('close', () => limiter.release(ip));
    onSocket(sock);
  });
}

/**
 * Connections the kernel holds for us before we accept them. Node's default, 511, overflowed when
 * 1,500 devices reconnected at once after a restart (the kernel dropped 4,489 SYNs, and devices
 * waited up to 30 s on SYN backoff while the server was still busy with the first ones). The
 * kernel caps it at net.core.somaxconn (4096 on current kernels).
 */
const LISTEN_BACKLOG = 4096;

export function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
