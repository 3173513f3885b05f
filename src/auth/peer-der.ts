// The peer certificate's DER, CN and serial read straight from the TLS session's DER: the
// handshake-time fast path of identity.ts. Minimal DER reading — just enough structure to find
// three fields; anything unexpected returns null and the caller takes Node's own (slower) API.
// Not @peculiar/asn1-schema (crl-x509.ts): it would decode the whole certificate into objects on
// every handshake, the cost this path exists to avoid, and it has no schema for OpenSSL's session.
import { canonicalSerial } from './serial.ts';

/** One DER element: its tag and where its content starts and ends. */
interface Tlv { tag: number; start: number; end: number }

/** The element at b[i] (definite lengths only, as DER requires), or null when malformed. */
function tlv(b: Uint8Array, i: number, limit: number): Tlv | null {
  if (i + 2 > limit) return null;
  const tag = b[i];
  let len = b[i + 1];
  let start = i + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) return null;
    len = 0;
    for (let k = 0; k < n; k++) len = len * 256 + b[start + k];
    start += n;
  }
  const end = start + len;
  return end > limit ? null : { tag, start, end };
}

const SEQUENCE = 0x30;
const SET = 0x31;
const INTEGER = 0x02;
const OID = 0x06;
/** [3] EXPLICIT: `peer` in OpenSSL's SSL_SESSION ASN.1 (ssl/ssl_asn1.c), stable since 0.9.x */
const SESSION_PEER = 0xa3;
/** [0] EXPLICIT version of TBSCertificate */
const CERT_VERSION = 0xa0;
/** id-at-commonName 2.5.4.3 */
const CN_OID = [0x55, 0x04, 0x03];

/**
 * The certificate the peer presented, as DER, from `TLSSocket.getSession()`'s encoding of the
 * session (SSL_SESSION: SEQUENCE { version, ssl_version, cipher, session_id, master_key,
 * [0] key_arg?, [1] time?, [2] timeout?, [3] peer?, ... }). Null when there is none.
 */
export function peerCertificateFromSession(session: Uint8Array): Uint8Array | null {
  const top = tlv(session, 0, session.length);
  if (!top || top.tag !== SEQUENCE) return null;
  for (let i = top.start; i < top.end;) {
    const e = tlv(session, i, top.end);
    if (!e) return null;
    if (e.tag === SESSION_PEER) {
      const cert = tlv(session, e.start, e.end);
      return cert && cert.tag === SEQUENCE && cert.end === e.end ? session.subarray(e.start, e.end) : null;
    }
    if (e.tag > SESSION_PEER && (e.tag & 0xe0) === 0xa0) return null; // past [3]: no peer certificate
    i = e.end;
  }
  return null;
}

export interface CertFields {
  /** serial number, lower-case hex without leading zeros ("0" for zero) */
  serial: string;
  /** the first commonName of the subject ('' when none) */
  cn: string;
}

/**
 * Serial and subject CN of a DER certificate. Null for anything this reader does not handle
 * exactly as Node's X509Certificate prints it (a negative serial, a CN string type or encoding
 * it would convert differently): the caller falls back to Node's parser.
 */
export function certFields(der: Uint8Array): CertFields | null {
  const cert = tlv(der, 0, der.length);
  if (!cert || cert.tag !== SEQUENCE) return null;
  const tbs = tlv(der, cert.start, cert.end);
  if (!tbs || tbs.tag !== SEQUENCE) return null;
  let e = tlv(der, tbs.start, tbs.end);
  if (e && e.tag === CERT_VERSION) e = tlv(der, e.end, tbs.end);
  if (!e || e.tag !== INTEGER || e.end === e.start || der[e.start] & 0x80) return null;
  let serial: string;
  try {
    // the project's one canonical form (and its length bound: a longer serial is left to Node)
    serial = canonicalSerial(Buffer.from(der.buffer, der.byteOffset + e.start, e.end - e.start).toString('hex'));
  } catch {
    return null;
  }
  // signature AlgorithmIdentifier, issuer, validity, then subject
  for (let k = 0; k < 3 && e; k++) e = tlv(der, e.end, tbs.end);
  const subject = e && tlv(der, e.end, tbs.end);
  if (!subject || subject.tag !== SEQUENCE) return null;
  for (let i = subject.start; i < subject.end;) {
    const rdn = tlv(der, i, subject.end);
    if (!rdn || rdn.tag !== SET) return null;
    for (let j = rdn.start; j < rdn.end;) {
      const ava = tlv(der, j, rdn.end);
      if (!ava || ava.tag !== SEQUENCE) return null;
      const oid = tlv(der, ava.start, ava.end);
      if (!oid || oid.tag !== OID) return null;
      if (oid.end - oid.start === 3 && der[oid.start] === CN_OID[0] && der[oid.start + 1] === CN_OID[1] && der[oid.start + 2] === CN_OID[2]) {
        const v = tlv(der, oid.end, ava.end);
        const cn = v && decodeString(v.tag, der.subarray(v.start, v.end));
        return cn === null || cn === undefined ? null : { serial, cn };
      }
      j = ava.end;
    }
    i = rdn.end;
  }
  return { serial, cn: '' };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A directory string as UTF-8 text, or null for a type or content we leave to Node. */
function decodeString(tag: number, v: Uint8Array): string | null {
  switch (tag) {
    case 0x0c: // UTF8String
      try { return utf8.decode(v); } catch { return null; }
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x1a: // VisibleString
      for (let i = 0; i < v.length; i++) if (v[i] > 0x7e || v[i] === 0) return null;
      return Buffer.from(v.buffer, v.byteOffset, v.length).toString('latin1');
    default: // BMPString, T61String, UniversalString…: rare in client certificates
      return null;
  }
}
