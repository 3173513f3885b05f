// /metrics (Prometheus text), /healthz (liveness), /readyz (listener up and, when configured, bus up).
import http from 'node:http';
import type { Socket } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Metrics } from './metrics.ts';
import { LogLimiter, type Logger } from './log.ts';
import { addressAllowed, parseAllowList } from '../net/addresses.ts';
import { ConnectionLimiter } from '../net/tls.ts';
import { remoteOf } from '../auth/identity.ts';

/**
 * Bounds of the HTTP listener. Node's own defaults let one peer hold any number of connections,
 * each for a minute before it has sent a header: enough idle connections there used up the
 * process's file descriptors, and from then on every CoT client was turned away in silence. A
 * scraper, a balancer's probe or an orchestrator needs a connection or two each.
 */
export const HTTP_LIMITS = {
  /** connections at once, in all (cut further to fit the descriptors: net/fdlimit.ts) */
  maxConnections: 256,
  /** connections at once from one address */
  maxPerIp: 8,
  /** a request's headers, and the whole request, must arrive within this (ms); a connection
   *  silent this long is closed */
  requestTimeout: 10_000,
  /** how often Node looks for connections over requestTimeout (ms) */
  checkInterval: 1000,
} as const;

export interface HttpOptions {
  host: string;
  port: number;
  token: string;        // '' = no token required
  allow: string;        // comma-separated IPs/CIDRs; '' = any
  ready: () => boolean;
  /** connections at once (default HTTP_LIMITS.maxConnections) */
  maxConnections?: number;
  /** request timeout in ms (default HTTP_LIMITS.requestTimeout; tests shorten it) */
  requestTimeout?: number;
}

// Compare digests so the comparison is constant-time whatever the lengths.
function tokenOk(expected: Buffer | null, header: string | undefined): boolean {
  if (!expected) return true;
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!m) return false;
  return timingSafeEqual(expected, createHash('sha256').update(m[1].trim()).digest());
}

export function startHttp(opts: HttpOptions, metrics: Metrics, log: Logger): Promise<http.Server> {
  const allow = parseAllowList(opts.allow);
  const token = opts.token ? createHash('sha256').update(opts.token).digest() : null;
  const timeout = opts.requestTimeout ?? HTTP_LIMITS.requestTimeout;
  const server = http.createServer({
    headersTimeout: timeout,
    requestTimeout: timeout,
    connectionsCheckingInterval: Math.min(HTTP_LIMITS.checkInterval, timeout),
  }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405).end(); return; }
    if (path === '/healthz') { res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n'); return; }
    if (path === '/readyz') {
      const ok = opts.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
      return;
    }
    if (path === '/metrics') {
      if (!addressAllowed(allow, req.socket.remoteAddress)) { res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden\n'); return; }
      if (!tokenOk(token, req.headers.authorization)) {
        res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="cotstream"' }).end('unauthorized\n');
        return;
      }
      metrics.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
        (err: Error) => { log.error({ err: err.message }, 'metrics collection failed'); res.writeHead(500).end(); },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  // and a connection that sends nothing at all: Node's request timeouts start with the first byte
  server.timeout = timeout;
  limitConnections(server, new ConnectionLimiter(opts.maxConnections ?? HTTP_LIMITS.maxConnections, HTTP_LIMITS.maxPerIp), metrics, log);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

const ipKey = Symbol('cotstream.http.ip');
type Tagged = Socket & { [ipKey]?: string };

/** Refuse connections over the limits before Node's HTTP parser sees them: counted, logged (20/s at most). */
function limitConnections(server: http.Server, limiter: ConnectionLimiter, metrics: Metrics, log: Logger): void {
  const limited = new LogLimiter(log);
  function release(this: Tagged): void { limiter.release(this[ipKey]!); }
  // prepended: runs before Node's own 'connection' listener hands the socket to the parser
  server.prependListener('connection', (sock: Tagged) => {
    const ip = sock.remoteAddress ?? '?';
    if (limiter.acquire(ip) !== null) {
      metrics.httpRefused.inc();
      if (limited.allow()) log.warn({ audit: 'refused', listener: 'http', reason: 'limit', remote: remoteOf(sock), open: limiter.open }, 'HTTP connection refused: connection limit of the metrics listener');
      sock.destroy();
      return;
    }
    sock[ipKey] = ip;
    sock.once('close', release);
  });
}
