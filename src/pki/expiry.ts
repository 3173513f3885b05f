// Certificate expiry for operations: a gauge per certificate and a log warning when one has
// under 30 days left, checked at start and twice a day (a server runs for months).
import type { Gauge } from 'prom-client';
import type { Logger } from 'pino';
import { certificateExpiry } from './files.ts';

export const EXPIRY_WARN_DAYS = 30;
const CHECK_EVERY_MS = 12 * 3600_000;

/** Set the gauge and warn now and periodically; returns a stop function. Unreadable files are logged, not fatal.
 *  `also` runs with the periodic checks only (what it checks has warned for itself when it loaded). */
export function watchCertificateExpiry(certs: Record<string, string>, gauge: Gauge<'cert'>, log: Logger, also?: () => void): () => void {
  const check = () => {
    for (const [name, file] of Object.entries(certs)) {
      let exp: Date;
      try {
        exp = certificateExpiry(file);
      } catch (err) {
        log.warn({ cert: name, file, err: (err as Error).message }, 'cannot read certificate expiry');
        continue;
      }
      gauge.set({ cert: name }, Math.floor(exp.getTime() / 1000));
      const days = (exp.getTime() - Date.now()) / 86400_000;
      if (days < EXPIRY_WARN_DAYS) {
        log.warn(
          { cert: name, file, not_after: exp.toISOString(), days_left: Math.floor(days) },
          days < 0 ? `${name} certificate has EXPIRED` : `${name} certificate expires in ${Math.floor(days)} days`,
        );
      }
    }
  };
  check();
  const t = setInterval(() => { check(); also?.(); }, CHECK_EVERY_MS);
  t.unref();
  return () => clearInterval(t);
}
