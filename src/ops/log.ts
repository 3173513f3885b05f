// Structured JSON logs (pino) that double as the audit trail. Secrets never reach a log line:
// callers pass identities and counters only, and the redact list is a second line of defence.
import { pino, type Logger } from 'pino';

export type { Logger };

export interface StdoutOptions {
  /** bytes held while stdout does not take them; beyond, lines are dropped (0: unlimited) */
  maxBuffer: number;
  /** called once per dropped line (a metric) */
  onDrop?: () => void;
}

type Stdout = ReturnType<typeof pino.destination>;
/** the stdout destination of each logger createLogger made (for settleLog) */
const stdoutOf = new WeakMap<Logger, Stdout>();

/** The logger: to `dest` (tests), or to stdout through a bounded buffer. */
export function createLogger(level: string, dest?: NodeJS.WritableStream, stdout: StdoutOptions = { maxBuffer: 0 }): Logger {
  const out = dest ?? pino.destination({ dest: 1, sync: false, maxLength: stdout.maxBuffer });
  const log = pino(
    {
      level,
      base: { svc: 'cotstream' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', '*.password', 'token', '*.token', 'key', '*.key', 'authorization', '*.authorization'], censor: '[redacted]' },
      formatters: { log: clipFields },
    },
    out,
  );
  if (!dest) {
    stdoutOf.set(log, out as Stdout);
    // A log reader that stalls (a paused pipe, a stuck shipper) must not grow the server without
    // bound: lines over the buffer are dropped, counted, and reported in one line once stdout
    // has taken everything pending again.
    let dropped = 0;
    out.on('drop', () => { dropped++; stdout.onDrop?.(); });
    out.on('drain', () => {
      if (dropped === 0) return;
      const n = dropped;
      dropped = 0;
      log.warn({ audit: 'log_dropped', lines: n }, `${n} log lines dropped: stdout was not taking them and --log-buffer was full`);
    });
  }
  return log;
}

/** the longest string field a log line carries (an error's stack fits; a client's text is clipped) */
export const MAX_LOG_FIELD = 2048;

/**
 * Strings a client chose (uid, callsign, type, a version) reach audit lines: at full length a
 * 1-MB callsign made a 1-MB line, the log grew as fast as the client uploaded, and line-based
 * shippers choke on such lines. Each top-level string field is clipped, saying by how much.
 */
function clipFields(o: Record<string, unknown>): Record<string, unknown> {
  let out = o;
  for (const k in o) {
    const v = o[k];
    if (typeof v !== 'string' || v.length <= MAX_LOG_FIELD) continue;
    if (out === o) out = { ...o }; // the caller's object stays as it was
    out[k] = `${v.slice(0, MAX_LOG_FIELD)}…[${v.length - MAX_LOG_FIELD} more characters]`;
  }
  return out;
}

/**
 * Before the process exits: give stdout up to `ms` to take the lines still pending. pino writes
 * whatever is left synchronously on exit, so with a log reader that hung the exit would wait for
 * it forever; past the grace period the pending lines are given up instead and the exit goes on.
 */
export async function settleLog(log: Logger, ms: number): Promise<void> {
  const out = stdoutOf.get(log);
  if (!out) { log.flush(); return; }
  // sonic-boom keeps no public count of what it holds: `_len` is the bytes buffered or in flight
  const pending = (): boolean => ((out as unknown as { _len?: number })._len ?? 0) > 0;
  const deadline = Date.now() + ms;
  while (pending() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (pending()) out.destroy();
}

/**
 * Lets a repeated warning through at most `perSecond` times a second and reports how many were
 * suppressed, so a flood of bad handshakes cannot flood the log.
 */
export class LogLimiter {
  private windowStart = 0;
  private count = 0;
  private suppressed = 0;
  /** reports the window's count when it ends, whether or not another line comes after it */
  private timer: NodeJS.Timeout | null = null;
  private readonly report = (): void => {
    this.timer = null;
    if (this.suppressed > 0) this.log.warn({ audit: 'suppressed', count: this.suppressed }, 'log lines suppressed by rate limit');
    this.suppressed = 0;
  };
  constructor(private readonly log: Logger, private readonly perSecond = 20) {}
  allow(): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      if (this.timer !== null) { clearTimeout(this.timer); this.report(); }
      this.windowStart = now;
      this.count = 0;
    }
    if (this.count < this.perSecond) { this.count++; return true; }
    if (this.suppressed++ === 0) {
      this.timer = setTimeout(this.report, Math.max(0, this.windowStart + 1000 - now));
      this.timer.unref();
    }
    return false;
  }
}

/** Query parameters that may carry a credential (ioredis reads `?password=` from its URL). */
const SECRET_PARAM = /pass|secret|token|auth|cred|key/i;

/**
 * A URL as it may be logged: user info and credential-looking query values replaced by
 * `[redacted]`. Parsed as the client library parses it (WHATWG URL, last `@` ends the user
 * info), so a password with a raw `@` is redacted whole; an unparseable URL is not shown at all;
 * a #fragment (ignored by ioredis) is dropped.
 */
export function redactUrl(url: string): string {
  if (!url) return url;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '[redacted: not a valid URL]';
  }
  const auth = u.username !== '' || u.password !== '' ? '[redacted]@' : '';
  const query = u.search
    .slice(1)
    .split('&')
    .filter(Boolean)
    .map((kv) => {
      const eq = kv.indexOf('=');
      const k = eq < 0 ? kv : kv.slice(0, eq);
      let name = k;
      try { name = decodeURIComponent(k); } catch { /* keep it raw */ }
      return eq >= 0 && SECRET_PARAM.test(name) ? `${k}=[redacted]` : kv;
    })
    .join('&');
  return `${u.protocol}//${auth}${u.host}${u.pathname}${query ? `?${query}` : ''}`;
}
