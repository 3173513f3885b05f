// Who a client is, from its verified peer certificate.
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { canonicalSerial } from './serial.ts';
import { certFields, peerCertificateFromSession } from './peer-der.ts';
import { peerOf } from '../net/proxy.ts';

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
  const { address: a = '?', port } = peerOf(sock);
  // a connection reset before it was accepted has no address left: '?', not '?:undefined'
  if (port === undefined) return a;
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}

/**
 * Who the peer is, from its certificate, read out of the session's DER (peer-der.ts): ~50 µs on
 * a handshake's first call, the SHA-256 fingerprint included.
 * Not getPeerX509Certificate() first: its first call on a socket also copies the rest of the chain
 * the client sent (X509_dup of its CA certificate, key re-parsed — Node's own TLS clients, and
 * devices whose p12 holds the CA, send it): ~140 µs, 6% of a whole handshake's CPU. Nor
 * getPeerCertificate(): it turns the whole certificate into JS objects (three fingerprints, the
 * modulus as hex, every extension), ~60 µs. A session or certificate the DER reader does not
 * handle exactly like Node (peer-der.ts says which) takes getPeerX509Certificate().
 */
export function identityFromSocket(sock: TLSSocket): ClientIdentity {
  const session = sock.getSession();
  const der = session ? peerCertificateFromSession(session) : null;
  const fields = der ? certFields(der) : null;
  if (der && fields) {
    return { cn: fields.cn, serial: fields.serial, fingerprint: fingerprint256(der), remote: remoteOf(sock), plaintext: false };
  }
  return identityFromX509(sock);
}

/** The same identity through Node's X509Certificate (the fallback, and the reference in tests). */
export function identityFromX509(sock: TLSSocket): ClientIdentity {
  const cert = sock.getPeerX509Certificate();
  return {
    cn: cert ? cnOfSubject(cert.subject) : '',
    serial: cert ? canonicalSerial(cert.serialNumber) : '',
    fingerprint: cert ? cert.fingerprint256 : '',
    remote: remoteOf(sock),
    plaintext: false,
  };
}

/** SHA-256 of the DER as X509Certificate.fingerprint256 prints it: colon-separated upper-case hex. */
function fingerprint256(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
}
