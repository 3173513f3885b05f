// Who a client is, from its verified peer certificate.
import type { TLSSocket } from 'node:tls';
import { canonicalSerial } from './serial.ts';

export interface ClientIdentity {
  /** subject CN ('' when absent or on the plaintext port) */
  cn: string;
  /** certificate serial, canonical: lower-case hex without leading zeros ('' on the plaintext port) */
  serial: string;
  /** SHA-256 fingerprint, colon-separated upper-case hex as Node prints it */
  fingerprint: string;
  /** remote address and port */
  remote: string;
  /** connected without TLS (opt-in plaintext port) */
  plaintext: boolean;
}


/** The first CN of a subject as Node's X509Certificate prints it (one RDN per line, RFC 2253
 *  escapes: `\,` `\+` … and `\XX` for control characters; " + " joins a multi-valued RDN). */
export function cnOfSubject(subject: string): string {
  for (const line of subject.split('\n')) {
    for (const ava of line.split(' + ')) {
      if (ava.startsWith('CN=')) return ava.slice(3).replace(/\\([0-9A-Fa-f]{2}|[^])/g, (_m, e: string) => (e.length === 2 ? String.fromCharCode(parseInt(e, 16)) : e));
    }
  }
  return '';
}

export function remoteOf(sock: { remoteAddress?: string; remotePort?: number }): string {
  const a = sock.remoteAddress ?? '?';
  return a.includes(':') ? `[${a}]:${sock.remotePort}` : `${a}:${sock.remotePort}`;
}

/** Who the peer is, from its certificate. getPeerX509Certificate(), not getPeerCertificate(): the
 *  latter turns the whole certificate into JS objects (three fingerprints, the modulus as hex, the
 *  DER, every extension) on each handshake — ~3% of a handshake's CPU and garbage for the GC —
 *  while only the CN, serial and SHA-256 fingerprint are needed. */
export function identityFromSocket(sock: TLSSocket): ClientIdentity {
  const cert = sock.getPeerX509Certificate();
  return {
    cn: cert ? cnOfSubject(cert.subject) : '',
    serial: cert ? canonicalSerial(cert.serialNumber) : '',
    fingerprint: cert ? cert.fingerprint256 : '',
    remote: remoteOf(sock),
    plaintext: false,
  };
}
