// Who a client is, from its verified peer certificate.
import type { TLSSocket, PeerCertificate } from 'node:tls';
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


function firstValue(v: string | string[] | undefined): string {
  return Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
}

export function remoteOf(sock: { remoteAddress?: string; remotePort?: number }): string {
  const a = sock.remoteAddress ?? '?';
  return a.includes(':') ? `[${a}]:${sock.remotePort}` : `${a}:${sock.remotePort}`;
}

export function identityFromSocket(sock: TLSSocket): ClientIdentity {
  const cert = sock.getPeerCertificate() as PeerCertificate | Record<string, never>;
  const has = cert && 'serialNumber' in cert && typeof cert.serialNumber === 'string';
  return {
    cn: has ? firstValue((cert as PeerCertificate).subject?.CN) : '',
    serial: has ? canonicalSerial((cert as PeerCertificate).serialNumber) : '',
    fingerprint: has ? (cert as PeerCertificate).fingerprint256 : '',
    remote: remoteOf(sock),
    plaintext: false,
  };
}
