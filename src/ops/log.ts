// Structured JSON logs (pino) that double as the audit trail. Secrets never reach a log line:
// callers pass identities and counters only, and the redact list is a second line of defence.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, dest?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { svc: 'cotstream' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', '*.password', 'token', '*.token', 'key', '*.key', 'authorization', '*.authorization'], censor: '[redacted]' },
    },
    dest ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * Lets a repeated warning through at most `perSecond` times a second and reports how many were
 * suppressed, so a flood of bad handshakes cannot flood the log.
 */
export class LogLimiter {
  private windowStart = 0;
  private count = 0;
  private suppressed = 0;
  constructor(private readonly log: Logger, private readonly perSecond = 20) {}
  allow(): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      if (this.suppressed > 0) this.log.warn({ audit: 'suppressed', count: this.suppressed }, 'log lines suppressed by rate limit');
      this.windowStart = now;
      this.count = 0;
      this.suppressed = 0;
    }
    if (this.count < this.perSecond) { this.count++; return true; }
    this.suppressed++;
    return false;
  }
}
