// /metrics (Prometheus text), /healthz (liveness), /readyz (listener up and, when configured, bus up).
import http from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Metrics } from './metrics.ts';
import type { Logger } from './log.ts';
import { addressAllowed, parseAllowList } from '../net/addresses.ts';

export interface HttpOptions {
  host: string;
  port: number;
  token: string;        // '' = no token required
  allow: string;        // comma-separated IPs/CIDRs; '' = any
  ready: () => boolean;
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
  const server = http.createServer((req, res) => {
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
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
