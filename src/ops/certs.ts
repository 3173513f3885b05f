// Expiry of the certificates the server runs with, as `cot_certificate_expiry_timestamp_seconds`
// (the alert rules warn 30 days ahead) and as a startup warning in the log.
import { X509Certificate } from 'node:crypto';
import type { Metrics, CertKind } from './metrics.ts';
import type { Logger } from './log.ts';

const WARN_DAYS = 30;
const DAY_MS = 86_400_000;

/** Record notAfter of the CA and server certificates (PEM bytes; the first certificate counts). */
export function recordCertificateExpiry(metrics: Metrics, log: Logger, pems: Record<CertKind, Buffer>, now = Date.now()): void {
  for (const cert of Object.keys(pems) as CertKind[]) {
    let notAfter: number;
    try {
      notAfter = Date.parse(new X509Certificate(pems[cert]).validTo);
    } catch (err) {
      log.warn({ cert, err: (err as Error).message }, `cannot read the expiry of the ${cert} certificate`);
      continue;
    }
    metrics.certExpiry.labels(cert).set(Math.floor(notAfter / 1000));
    const days = Math.floor((notAfter - now) / DAY_MS);
    if (notAfter <= now) log.error({ audit: 'cert_expired', cert, notAfter: new Date(notAfter).toISOString() }, `the ${cert} certificate has EXPIRED`);
    else if (days < WARN_DAYS) log.warn({ audit: 'cert_expiring', cert, notAfter: new Date(notAfter).toISOString(), days }, `the ${cert} certificate expires in ${days} days`);
  }
}
