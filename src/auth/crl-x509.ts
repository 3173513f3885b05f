// X.509 CRLs (RFC 5280 CertificateList): read PEM or DER, write PEM signed by our CA.
// node-forge has no CRL support; @peculiar/asn1-x509 provides the typed ASN.1 schema (widely
// used, maintained, no reflect-metadata polyfill unlike @peculiar/x509) and node:crypto signs,
// synchronously, with the CA key.
import { createPrivateKey, sign as cryptoSign, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AuthorityKeyIdentifier,
  Certificate,
  CertificateList,
  CRLNumber,
  CRLReason,
  Extension,
  KeyIdentifier,
  Name,
  RevokedCertificate,
  SubjectKeyIdentifier,
  TBSCertList,
  Time,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_cRLReasons,
  id_ce_subjectKeyIdentifier,
} from '@peculiar/asn1-x509';
import { canonicalSerial } from './serial.ts';

/** Revocation reasons by our name (CLI and JSON), with their RFC 5280 CRLReason codes. */
export const REASONS = {
  unspecified: 0,
  key_compromise: 1,
  ca_compromise: 2,
  affiliation_changed: 3,
  superseded: 4,
  cessation_of_operation: 5,
  certificate_hold: 6,
  privilege_withdrawn: 9,
  aa_compromise: 10,
} as const;
export type ReasonName = keyof typeof REASONS;
/** The reasons `cotstream revoke --reason` offers (hold and AA are not ours to use). */
export const REVOKE_REASONS: ReasonName[] = [
  'unspecified',
  'key_compromise',
  'ca_compromise',
  'affiliation_changed',
  'superseded',
  'cessation_of_operation',
  'privilege_withdrawn',
];

export function reasonName(code: number): string {
  for (const [k, v] of Object.entries(REASONS)) if (v === code) return k;
  return `code_${code}`;
}

export interface CrlEntry {
  serial: string;
  date: Date;
  reason: string;
}

export interface ParsedCrl {
  issuer: string;
  thisUpdate: Date;
  nextUpdate?: Date;
  entries: CrlEntry[];
}

const PEM_CRL = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/g;

export function isPemCrl(text: string): boolean {
  return text.includes('-----BEGIN X509 CRL-----');
}

/** Every CRL in a PEM text (a bundle may hold several); throws when there is none or one is broken. */
export function parsePemCrls(text: string): ParsedCrl[] {
  const out: ParsedCrl[] = [];
  for (const m of text.matchAll(PEM_CRL)) out.push(parseDerCrl(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')));
  if (!out.length) throw new Error('no complete "BEGIN X509 CRL" block');
  return out;
}

const bytesHex = (b: ArrayBuffer | Uint8Array) => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString('hex');

export function parseDerCrl(der: Uint8Array): ParsedCrl {
  let list: CertificateList;
  try {
    list = AsnConvert.parse(der, CertificateList);
  } catch (err) {
    throw new Error(`not an X.509 CRL: ${(err as Error).message}`);
  }
  const tbs = list.tbsCertList;
  const entries = (tbs.revokedCertificates ?? []).map((r): CrlEntry => {
    let reason = 'unspecified';
    for (const ext of r.crlEntryExtensions ?? []) {
      if (ext.extnID === id_ce_cRLReasons) reason = reasonName(AsnConvert.parse(ext.extnValue, CRLReason).reason);
    }
    return { serial: canonicalSerial(bytesHex(r.userCertificate)), date: r.revocationDate.getTime(), reason };
  });
  return { issuer: nameToString(tbs.issuer), thisUpdate: tbs.thisUpdate.getTime(), nextUpdate: tbs.nextUpdate?.getTime(), entries };
}

const NAME_OIDS: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

/** "CN=cotstream CA, O=cotstream" — the same shape openssl and Node print, for humans. */
export function nameToString(name: Name): string {
  return name
    .map((rdn) => rdn.map((atv) => `${NAME_OIDS[atv.type] ?? atv.type}=${atv.value.toString()}`).join('+'))
    .join(', ');
}

export interface SignCrlInput {
  caCertPem: string;
  caKeyPem: string;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: { serial: string; date: Date; reason: string }[];
  /** Monotonic CRL number; defaults to thisUpdate in seconds. */
  crlNumber?: number;
}

const SHA256_WITH_RSA = '1.2.840.113549.1.1.11';
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

function serialBytes(hex: string): ArrayBuffer {
  let h = canonicalSerial(hex);
  if (h.length % 2) h = '0' + h;
  if (parseInt(h.slice(0, 2), 16) >= 0x80) h = '00' + h; // positive INTEGER
  const b = Buffer.from(h, 'hex');
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
}

function ext(extnID: string, value: unknown): Extension {
  return new Extension({ extnID, critical: false, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** A v2 CRL signed by the CA (issuer, AKI and signature taken from its certificate and key), as PEM. */
export function signCrl(i: SignCrlInput): string {
  const caDer = new X509Certificate(i.caCertPem).raw;
  const ca = AsnConvert.parse(caDer, Certificate);
  const key = createPrivateKey(i.caKeyPem);
  const isEc = key.asymmetricKeyType === 'ec';
  // RSA signature algorithms carry an explicit NULL parameter; ECDSA ones carry none
  const sigAlg = new AlgorithmIdentifier({ algorithm: isEc ? ECDSA_WITH_SHA256 : SHA256_WITH_RSA, parameters: isEc ? undefined : null });

  const crlExtensions: Extension[] = [ext(id_ce_cRLNumber, new CRLNumber(i.crlNumber ?? Math.floor(i.thisUpdate.getTime() / 1000)))];
  const skiExt = ca.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
  if (skiExt) {
    const ski = AsnConvert.parse(skiExt.extnValue, SubjectKeyIdentifier);
    crlExtensions.unshift(ext(id_ce_authorityKeyIdentifier, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(ski.buffer) })));
  }

  const revoked = [...i.entries]
    .sort((a, b) => a.date.getTime() - b.date.getTime())
    .map((e) => {
      const code = REASONS[e.reason as ReasonName] ?? 0;
      return new RevokedCertificate({
        userCertificate: serialBytes(e.serial),
        revocationDate: new Time(e.date),
        // RFC 5280 5.3.1: omit reasonCode rather than write "unspecified"
        crlEntryExtensions: code ? [ext(id_ce_cRLReasons, new CRLReason(code))] : undefined,
      });
    });

  const tbs = new TBSCertList({
    version: Version.v2,
    signature: sigAlg,
    issuer: ca.tbsCertificate.subject,
    thisUpdate: new Time(i.thisUpdate),
    nextUpdate: new Time(i.nextUpdate),
    revokedCertificates: revoked.length ? revoked : undefined,
    crlExtensions,
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const signature = cryptoSign('sha256', tbsDer, key);
  const list = new CertificateList({
    tbsCertList: tbs,
    signatureAlgorithm: sigAlg,
    signature: signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.length) as ArrayBuffer,
  });
  const der = Buffer.from(AsnConvert.serialize(list));
  const b64 = der.toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN X509 CRL-----\n${b64}\n-----END X509 CRL-----\n`;
}

/** Signature algorithms verifyCrl accepts, by OID: the hash node:crypto verifies with. */
const SIG_HASH: Record<string, string> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};

/** The bytes of the first element of the DER SEQUENCE `der` (a CRL's tbsCertList, as signed). */
function firstElement(der: Uint8Array): Uint8Array {
  const len = (at: number): [number, number] => {
    const b = der[at];
    if (b === undefined) throw new Error('truncated');
    if (b < 0x80) return [b, at + 1];
    const n = b & 0x7f;
    if (n === 0 || n > 4) throw new Error('bad length');
    let v = 0;
    for (let i = 1; i <= n; i++) v = v * 256 + (der[at + i] ?? NaN);
    return [v, at + 1 + n];
  };
  if (der[0] !== 0x30) throw new Error('not a SEQUENCE');
  const [, body] = len(1);
  if (der[body] !== 0x30) throw new Error('tbsCertList is not a SEQUENCE');
  const [n, start] = len(body + 1);
  if (!Number.isFinite(n) || start + n > der.length) throw new Error('truncated');
  return der.subarray(body, start + n);
}

/**
 * A DER CRL, parsed, if one of the CA certificates in `caPem` (one or a bundle) signed it; throws
 * saying why not. What a node takes from other nodes is only ever what the CA signed: anyone who
 * can write to Redis can offer a list, nobody without the CA key can make one a node enforces.
 */
export function verifyCrl(der: Uint8Array, caPem: string): ParsedCrl {
  const parsed = parseDerCrl(der);
  let list: CertificateList;
  let tbs: Uint8Array;
  try {
    list = AsnConvert.parse(der, CertificateList);
    tbs = firstElement(der);
  } catch (err) {
    throw new Error(`not an X.509 CRL: ${(err as Error).message}`);
  }
  const hash = SIG_HASH[list.signatureAlgorithm.algorithm];
  if (hash === undefined) throw new Error(`unsupported signature algorithm ${list.signatureAlgorithm.algorithm}`);
  const sig = new Uint8Array(list.signature);
  const cas = [...caPem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));
  if (cas.length === 0) throw new Error('no CA certificate to verify with');
  for (const ca of cas) {
    try {
      if (cryptoVerify(hash, tbs, ca.publicKey, sig)) return parsed;
    } catch {
      /* a key of another type: try the next CA */
    }
  }
  throw new Error(`not signed by ${cas.length === 1 ? 'the CA' : 'any of the CAs'} (issuer ${parsed.issuer})`);
}
