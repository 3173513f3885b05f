// Reading and writing revocation lists in every form cotstream accepts:
//  - our JSON: {"issuer", "last_update", "next_update", "revoked": [{"serial_number", "revocation_date", "reason"}]}
//    with serial_number a hex string (colons and case as you like) or a decimal integer of any size
//    (FreeTAKServer's repair tool writes decimal integers);
//  - a PEM X.509 CRL, whatever the file is called (FreeTAKServer's FTS_CRL.json is one);
//  - a DER X.509 CRL.
// Parsing is strict: anything unexpected throws, so the caller keeps its last good list.
import fs from 'node:fs';
import path from 'node:path';
import { canonicalSerial } from './serial.ts';
import { parseRawJson, RawNumber, type RawJson } from './json-raw.ts';
import { isPemCrl, parseDerCrl, parsePemCrls, reasonName, signCrl, REASONS, type ParsedCrl } from './crl-x509.ts';
import { writeFileAtomic, PUBLIC_MODE } from '../pki/files.ts';
import { pkiPaths } from '../pki/paths.ts';

export interface RevokedEntry {
  serial: string;
  reason: string;
  date: string;
  subject?: string;
}

export type RevocationFormat = 'json' | 'pem' | 'der';

export interface RevocationData {
  format: RevocationFormat;
  /** set when the file was missing and this list is the signed copy's (see readRevocationFile) */
  restoredFrom?: string;
  issuer?: string;
  lastUpdate?: Date;
  nextUpdate?: Date;
  /** Canonical serial → entry; first occurrence wins. */
  entries: Map<string, RevokedEntry>;
  /** what an operator should fix in the file (read all the same) */
  warnings?: string[];
}

/**
 * A JSON string serial of this many decimal digits or more is taken both ways. Strings are hex, but
 * a hand edit or a script's str(serial) quotes a decimal serial, and read as hex alone that
 * revocation would let the device in. A hex serial made only of the digits 0-9 is rare at this
 * length ((10/16)^17 < 0.05%); the other reading revokes a serial no certificate has.
 */
const AMBIGUOUS_DIGITS = 17;

/** How far ahead `revoke` / `crl refresh` set next_update. Never enforced by cotstream itself. */
export const DEFAULT_CRL_DAYS = 90;

export function parseRevocationFile(raw: Buffer): RevocationData {
  if (raw.length === 0) throw new Error('file is empty');
  if (raw[0] === 0x30) return fromCrls('der', [parseDerCrl(raw)]);
  const text = raw.toString('utf8');
  if (isPemCrl(text)) return fromCrls('pem', parsePemCrls(text));
  return parseJsonList(text);
}

function fromCrls(format: RevocationFormat, crls: ParsedCrl[]): RevocationData {
  const entries = new Map<string, RevokedEntry>();
  let nextUpdate: Date | undefined;
  for (const crl of crls) {
    for (const e of crl.entries) if (!entries.has(e.serial)) entries.set(e.serial, { serial: e.serial, reason: e.reason, date: e.date.toISOString() });
    if (crl.nextUpdate && (!nextUpdate || crl.nextUpdate < nextUpdate)) nextUpdate = crl.nextUpdate;
  }
  return { format, issuer: crls[0]!.issuer, lastUpdate: crls[0]!.thisUpdate, nextUpdate, entries };
}

function isObject(v: RawJson): v is { [k: string]: RawJson } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof RawNumber);
}

function serialOf(v: RawJson | undefined, where: string): string {
  try {
    if (v instanceof RawNumber) {
      if (!/^\d+$/.test(v.text)) throw new Error(`${v.text} is not a whole number`);
      return canonicalSerial(BigInt(v.text)); // exact, however many digits
    }
    if (typeof v === 'string') return canonicalSerial(v);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
  throw new Error(`${where}: serial_number missing or not a string/number`);
}

function dateOf(v: RawJson | undefined): string {
  if (typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? v : new Date(t).toISOString();
  }
  if (v instanceof RawNumber) return new Date(v.toNumber() * 1000).toISOString(); // epoch seconds
  return '';
}

function optDate(v: RawJson | undefined): Date | undefined {
  if (typeof v !== 'string') return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : new Date(t);
}

function reasonOf(v: RawJson | undefined): string {
  if (v instanceof RawNumber) return reasonName(v.toNumber());
  if (typeof v === 'string' && v.trim()) {
    // accept "keyCompromise", "key-compromise", "Key Compromise" as key_compromise
    const k = v
      .trim()
      .replace(/([a-z])([A-Z])/g, '$1_$2')
      .replace(/[\s-]+/g, '_')
      .toLowerCase();
    return k === 'c_a_compromise' ? 'ca_compromise' : k;
  }
  return 'unspecified';
}

function parseJsonList(text: string): RevocationData {
  const doc = parseRawJson(text.replace(/^\uFEFF/, ''));
  let list: RawJson[];
  let top: { [k: string]: RawJson } = {};
  if (Array.isArray(doc)) list = doc;
  else if (isObject(doc) && Array.isArray(doc.revoked)) {
    top = doc;
    list = doc.revoked;
  } else throw new Error('expected a JSON object with a "revoked" array (or a PEM/DER X.509 CRL)');

  const entries = new Map<string, RevokedEntry>();
  const warnings: string[] = [];
  list.forEach((item, i) => {
    const where = `revoked[${i}]`;
    let entry: RevokedEntry;
    if (isObject(item)) {
      const serial = serialOf(item.serial_number ?? item.serialNumber ?? item.serial, where);
      entry = { serial, reason: reasonOf(item.reason), date: dateOf(item.revocation_date ?? item.revocationDate ?? item.date) };
      if (typeof item.subject === 'string') entry.subject = item.subject;
    } else {
      entry = { serial: serialOf(item, where), reason: 'unspecified', date: '' };
    }
    if (!entries.has(entry.serial)) entries.set(entry.serial, entry);
    const raw = isObject(item) ? (item.serial_number ?? item.serialNumber ?? item.serial) : item;
    if (typeof raw === 'string' && raw.trim().length >= AMBIGUOUS_DIGITS && /^\d+$/.test(raw.trim())) {
      const decimal = canonicalSerial(BigInt(raw.trim()));
      if (!entries.has(decimal)) entries.set(decimal, { ...entry, serial: decimal });
      warnings.push(`${where}: serial_number "${raw.trim()}" is a string of digits: revoked both as hex (how strings are read) and as the decimal number it looks like (hex ${decimal}); write a decimal serial as a bare number, a hex one as a string`);
    }
  });
  return {
    format: 'json',
    issuer: typeof top.issuer === 'string' ? top.issuer : undefined,
    lastUpdate: optDate(top.last_update),
    nextUpdate: optDate(top.next_update),
    entries,
    ...(warnings.length ? { warnings } : {}),
  };
}

/**
 * Read a list for modification; a missing file is an empty list of the format its name implies —
 * unless `signedCopy` (the crl.pem every write leaves in the certs dir) exists: then the list is
 * that copy's, so a lost crl.json is not rewritten from nothing (un-revoking everyone else).
 * Corrupt files throw.
 */
export function readRevocationFile(file: string, signedCopy?: string): RevocationData {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const copy = signedCopyOf(file, signedCopy);
    if (copy) return { ...copy, format: formatForPath(file), restoredFrom: signedCopy };
    return { format: formatForPath(file), entries: new Map() };
  }
  try {
    return parseRevocationFile(raw);
  } catch (err) {
    throw new Error(`${file} is not a valid revocation list (${(err as Error).message}); fix or move it first`);
  }
}

/**
 * The cluster's list that the nodes on this machine kept from Redis (`revoke --redis`:
 * `<certs-dir>/crl-cluster.pem`), enforced beside their own; null when there is none. For the
 * commands that show what a node refuses (the node verified its signature before keeping it).
 */
export function readClusterList(certsDir: string): { file: string; list: RevocationData } | { file: string; error: string } | null {
  const file = pkiPaths(certsDir).crlCluster;
  if (!fs.existsSync(file)) return null;
  try {
    return { file, list: parseRevocationFile(fs.readFileSync(file)) };
  } catch (err) {
    return { file, error: (err as Error).message };
  }
}

/** The list in `signedCopy` when `file` is missing and the copy is another file that parses; else undefined. */
export function signedCopyOf(file: string, signedCopy: string | undefined): RevocationData | undefined {
  if (!signedCopy || path.resolve(signedCopy) === path.resolve(file)) return undefined;
  let raw: Buffer;
  try {
    raw = fs.readFileSync(signedCopy);
  } catch {
    return undefined;
  }
  try {
    return parseRevocationFile(raw);
  } catch (err) {
    throw new Error(`${file} is missing and its signed copy ${signedCopy} is not a valid revocation list (${(err as Error).message}); fix or move it first`);
  }
}

/** A new file's format follows its name: .pem → PEM CRL, .der/.crl → DER, anything else our JSON. */
export function formatForPath(file: string): RevocationFormat {
  const ext = path.extname(file).toLowerCase();
  return ext === '.pem' ? 'pem' : ext === '.der' || ext === '.crl' ? 'der' : 'json';
}

export function toJson(d: { issuer?: string; lastUpdate: Date; nextUpdate: Date; entries: Iterable<RevokedEntry> }): string {
  const revoked = [...d.entries].map((e) => {
    const o: Record<string, string> = { serial_number: e.serial, revocation_date: e.date, reason: e.reason };
    if (e.subject) o.subject = e.subject;
    return o;
  });
  return (
    JSON.stringify(
      { issuer: d.issuer ?? null, last_update: d.lastUpdate.toISOString(), next_update: d.nextUpdate.toISOString(), revoked },
      null,
      2,
    ) + '\n'
  );
}

export interface WriteInput {
  /** The --crl file; keeps its format (an FTS PEM file stays a PEM CRL). */
  crlPath: string;
  format: RevocationFormat;
  /** Where the signed PEM CRL goes as well (certs/crl.pem, for the default list only). */
  crlPemPath?: string;
  caCertPem?: string;
  caKeyPem?: string;
  issuer?: string;
  entries: Iterable<RevokedEntry>;
  now?: Date;
  days?: number;
}

export interface WriteResult {
  written: string[];
  /** Why no signed CRL was written, if none was. */
  unsigned?: string;
  nextUpdate: Date;
  /** the signed CRL written (PEM), if one was */
  pem?: string;
}

/** Write the list (atomically, so a watching server never reads half a file) plus the signed crl.pem. */
export function writeRevocation(w: WriteInput): WriteResult {
  const now = w.now ?? new Date();
  const nextUpdate = new Date(now.getTime() + (w.days ?? DEFAULT_CRL_DAYS) * 86400_000);
  const entries = [...w.entries];
  const written: string[] = [];
  let pem: string | undefined;
  let unsigned: string | undefined;
  if (w.caCertPem && w.caKeyPem) {
    pem = signCrl({
      caCertPem: w.caCertPem,
      caKeyPem: w.caKeyPem,
      thisUpdate: now,
      nextUpdate,
      entries: entries.map((e) => ({ serial: e.serial, reason: e.reason in REASONS ? e.reason : 'unspecified', date: validDate(e.date, now) })),
    });
  } else unsigned = 'no CA certificate and key to sign with';

  if (w.format !== 'json' && !pem) throw new Error(`${w.crlPath} is an X.509 CRL and cannot be rewritten: ${unsigned}`);
  if (w.format === 'json') {
    writeFileAtomic(w.crlPath, toJson({ issuer: w.issuer, lastUpdate: now, nextUpdate, entries }), PUBLIC_MODE);
  } else if (w.format === 'pem') {
    writeFileAtomic(w.crlPath, pem!, PUBLIC_MODE);
  } else {
    writeFileAtomic(w.crlPath, pemToDer(pem!), PUBLIC_MODE);
  }
  written.push(w.crlPath);
  const copy = w.crlPemPath;
  if (pem && copy !== undefined && path.resolve(w.crlPath) !== path.resolve(copy)) {
    writeFileAtomic(copy, pem, PUBLIC_MODE);
    written.push(copy);
  }
  return { written, unsigned, nextUpdate, pem };
}

function validDate(s: string, fallback: Date): Date {
  const t = Date.parse(s);
  return Number.isNaN(t) ? fallback : new Date(t);
}

export function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}
