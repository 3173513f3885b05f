// The mutual-TLS CoT listener (and the opt-in plaintext one). Connection limits are enforced on
// the raw TCP socket before any TLS work; handshake failures are classified, counted and logged.
import tls from 'node:tls';
import net, { type BlockList } from 'node:net';
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
}

/** Counts open connections (handshaking ones too) in total and per IP. */
export class ConnectionLimiter {
  private total = 0;
  private readonly perIp = new Map<string, number>();
  constructor(private readonly maxTotal: number, private readonly maxPerIp: number) {}

  /** Reserve a slot; returns false when a limit is reached. */
  acquire(ip: string): boolean {
    const n = this.perIp.get(ip) ?? 0;
    if ((this.maxTotal > 0 && this.total >= this.maxTotal) || (this.maxPerIp > 0 && n >= this.maxPerIp)) return false;
    this.total++;
    this.perIp.set(ip, n + 1);
    return true;
  }

  release(ip: string): void {
    this.total--;
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
  }

  get open(): number { return this.total; }
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
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED|peer did not return a certificate/i.test(code + msg)) return 'no_cert';
  if (/CERTIFICATE_VERIFY_FAILED|certificate verify failed|UNKNOWN_CA|BAD_CERTIFICATE|UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED|CERT_REVOKED|certificate revoked/i.test(code + msg)) {
    return /revoked/i.test(code + msg) ? 'revoked' : 'bad_cert';
  }
  return 'error';
}

const refused = Symbol('cotstream.refused');
const remoteKey = Symbol('cotstream.remote');
const ipKey = Symbol('cotstream.ip');

type Tagged = net.Socket & { [refused]?: boolean; [remoteKey]?: string; [ipKey]?: string };

export interface TlsListenerHooks {
  /** a client completed mutual TLS with a certificate from our CA */
  onSecure(sock: tls.TLSSocket): void;
}

/** CN of the issuer of the peer certificate ('' when none): tells "another CA" from "our CA, expired". */
function issuerCn(sock: tls.TLSSocket): string {
  const cert = sock.getPeerX509Certificate();
  return cert ? cnOfSubject(cert.issuer) : '';
}

/**
 * The listener to listen on: the TLS server itself, or, with --proxy-protocol, a TCP server that
 * first reads the PROXY header of connections from the load balancers and then hands every
 * connection to the TLS server.
 */
export function createTlsListener(o: ListenerOptions, limiter: ConnectionLimiter, metrics: Metrics, log: Logger, hooks: TlsListenerHooks): net.Server {
  const limitedLog = new LogLimiter(log);
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
    handshakeTimeout: o.handshakeTimeout > 0 ? o.handshakeTimeout : undefined,
    // session tickets would let a revoked client resume without presenting its certificate again
    sessionTimeout: 0,
  });
  // one close listener for every socket (not a closure per connection: idle connections are many)
  function releaseSlot(this: Tagged): void { limiter.release(this[ipKey]!); }
  server.on('connection', (raw: net.Socket) => {
    raw.setNoDelay(true);
    const ip = peerOf(raw).address ?? '?';
    // remembered now: once the handshake fails the socket no longer knows its peer
    (raw as Tagged)[remoteKey] = remoteOf(raw);
    if (!limiter.acquire(ip)) {
      (raw as Tagged)[refused] = true;
      metrics.handshake.limit.inc();
      if (limitedLog.allow()) log.warn({ audit: 'refused', reason: 'limit', remote: remoteOf(raw), open: limiter.open }, 'connection refused: connection limit');
      raw.destroy();
      return;
    }
    (raw as Tagged)[ipKey] = ip;
    raw.on('close', releaseSlot);
  });
  server.on('tlsClientError', (err: Error & { code?: string }, sock: tls.TLSSocket) => {
    const raw = (sock as unknown as { _parent?: Tagged })._parent;
    if (raw?.[refused]) return;
    const authz = (sock as unknown as { authorizationError?: string }).authorizationError;
    const result = classifyHandshakeError(err, authz);
    metrics.handshake[result].inc();
    if (limitedLog.allow()) {
      log.warn({ audit: 'refused', reason: result, remote: raw?.[remoteKey] ?? remoteOf(sock), code: authz ?? err.code, err: err.message }, 'TLS handshake refused');
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
      const code = typeof err === 'string' ? err : (err as Error | null)?.message ?? '';
      const issuer = id.serial === '' ? undefined : issuerCn(sock);
      log.warn({ audit: 'refused', reason: result, cn: id.cn || undefined, serial: id.serial || undefined, issuer, remote: id.remote, code },
        result === 'no_cert' ? 'TLS client refused: no client certificate' : `TLS client refused: certificate not valid for this server (${code})`);
    }
    sock.destroy();
  });
  if (o.proxyFrom === null) return server;
  const proxyFrom = o.proxyFrom;
  const handOn = (sock: net.Socket): void => { server.emit('connection', sock); };
  return net.createServer((sock) => {
    if (!addressAllowed(proxyFrom, sock.remoteAddress)) { handOn(sock); return; }
    readProxyHeader(sock, o.handshakeTimeout, handOn, (err) => {
      const result: HandshakeResult = err === 'timeout' ? 'timeout' : 'error';
      metrics.handshake[result].inc();
      if (limitedLog.allow()) {
        log.warn({ audit: 'refused', reason: result, remote: remoteOf(sock), err: err === 'timeout' ? `no PROXY protocol header within ${o.handshakeTimeout} ms` : err.message },
          'connection from a load balancer refused: it must start with a PROXY protocol header (--proxy-protocol)');
      }
    });
  });
}

/** Opt-in plaintext CoT listener: no authentication at all, for legacy devices on trusted networks. */
export function createTcpListener(limiter: ConnectionLimiter, metrics: Metrics, log: Logger, onSocket: (sock: net.Socket) => void): net.Server {
  const limitedLog = new LogLimiter(log);
  return net.createServer((sock) => {
    sock.setNoDelay(true);
    const ip = sock.remoteAddress ?? '?';
    if (!limiter.acquire(ip)) {
      metrics.handshake.limit.inc();
      if (limitedLog.allow()) log.warn({ audit: 'refused', reason: 'limit', remote: remoteOf(sock) }, 'plaintext connection refused: connection limit');
      sock.destroy();
      return;
    }
    sock.once('close', () => limiter.release(ip));
    onSocket(sock);
  });
}

export function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
