// `cotstream revoke <serial|cert.pem> [--reason R]`, `cotstream crl list`, `cotstream crl refresh`
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { canonicalSerial } from './serial.ts';
import { REVOKE_REASONS } from './crl-x509.ts';
import { DEFAULT_CRL_DAYS, pemToDer, readClusterList, readRevocationFile, writeRevocation, type RevokedEntry, type RevocationData } from './revocation-file.ts';
import { pkiPaths, signedCopyFor, type PkiPaths } from '../pki/paths.ts';
import { assertKeyPrivate, DIR_MODE } from '../pki/files.ts';
import { ConfigError } from '../config.ts';
import { action, caKeyOption, caOption, certsDirOption, crlOption, parsePositiveInt, redisOptions, resolveCertsDir, resolveCrl, resolvePkiPaths, resolveRedis, stdio, table, type CommandIO } from '../pki/options.ts';
import { pushCrl } from '../bus/crl-share.ts';
import { DEFAULT_CHANNEL } from '../bus/redis.ts';
import { redactUrl } from '../ops/log.ts';

interface CommonOpts {
  certsDir?: string;
  crl?: string;
  crlDays?: number;
  ca?: string;
  caKey?: string;
  redis?: string;
  redisCa?: string;
  redisCert?: string;
  redisKey?: string;
}

function crlDaysOption(): Option {
  return new Option('--crl-days <n>', `next_update of the rewritten list, in days from now (default: ${DEFAULT_CRL_DAYS}; advisory: cotstream never locks clients out when it passes)`).argParser(
    parsePositiveInt('--crl-days'),
  );
}

/** Our name for a reason, also from its RFC 5280 / openssl spelling (keyCompromise, CACompromise). */
function reasonName(v: string): string {
  const key = (s: string) => s.replace(/_/g, '').toLowerCase();
  const found = REVOKE_REASONS.find((r) => key(r) === key(v));
  if (!found) throw new InvalidArgumentError(`Allowed choices are ${REVOKE_REASONS.join(', ')}.`);
  return found;
}

export function registerRevocationCommands(program: Command, io: CommandIO = stdio): void {
  const revoke = program
    .command('revoke')
    .description('revoke a client certificate: a running server drops its sessions and refuses it within a second, no restart')
    .argument('<serial|cert.pem>', 'certificate serial in hex (as `crl list`, `certs show` or `openssl x509 -serial` print it; colons allowed), or the certificate file')
    .addOption(certsDirOption())
    .addOption(crlOption())
    .addOption(caOption())
    .addOption(caKeyOption())
    .addOption(new Option('--reason <reason>', 'revocation reason, recorded in crl.json and crl.pem; the RFC 5280 / openssl spelling (keyCompromise) works too').choices(REVOKE_REASONS).argParser(reasonName).default('unspecified'))
    .addOption(crlDaysOption());
  for (const opt of redisOptions()) revoke.addOption(opt);
  revoke.action(
    action(revoke, async (target: string, o: CommonOpts & { reason: string }) => {
      const p = resolvePkiPaths(o);
      const certsDir = p.dir;
      const crl = resolveCrl(o.crl, certsDir);
      const redis = resolveRedis(o); // a bad --redis-* combination is refused before the list is touched
      const { serial, subject } = resolveTarget(target, p, io);
      const r = withLock(crl, () => {
        const list = readList(crl, signedCopyFor(crl, certsDir), io);
        const existing = list.entries.get(serial);
        if (existing) {
          io.out(`${serial} was already revoked${existing.date ? ` on ${existing.date}` : ''} (${existing.reason}); list refreshed\n`);
          if (subject && !existing.subject) existing.subject = subject;
        } else {
          const e: RevokedEntry = { serial, reason: o.reason, date: new Date().toISOString() };
          if (subject) e.subject = subject;
          list.entries.set(serial, e);
        }
        const r = save(list, crl, p, o.crlDays, io);
        if (!existing) io.out(`revoked ${serial}${subject ? ` (${subject})` : ''}, reason ${o.reason}\n`);
        io.out(report(r));
        return r;
      });
      await share(r, redis, io);
    }),
  );

  const crlCmd = program.command('crl').description('inspect and maintain the revocation list');

  const list = crlCmd
    .command('list')
    .description('show revoked serials with reason, date and subject (when known); on a node of a Redis cluster, also the cluster\'s list it took from Redis')
    .addOption(certsDirOption())
    .addOption(crlOption());
  list.action(
    action(list, (o: CommonOpts) => {
      const certsDir = resolveCertsDir(o.certsDir);
      const crl = resolveCrl(o.crl, certsDir);
      const l = readList(crl, signedCopyFor(crl, certsDir), io);
      const subjects = clientSubjects(certsDir);
      if (!fs.existsSync(crl) && !l.restoredFrom) {
        io.out(`${crl}: no revocation list (nothing revoked)\n`);
      } else {
        let head = `${crl} (${l.format})`;
        if (l.issuer) head += `  issuer: ${l.issuer}`;
        if (l.nextUpdate) head += `  next update: ${l.nextUpdate.toISOString()}${l.nextUpdate.getTime() < Date.now() ? ' (PASSED: run `cotstream crl refresh`)' : ''}`;
        io.out(head + '\n' + entriesTable(l, subjects));
      }
      // what the nodes on this machine took from the cluster's Redis (`revoke --redis`), enforced too
      const kept = readClusterList(certsDir);
      if (kept === null) return;
      if ('error' in kept) { io.err(`warning: ${kept.file}: ${kept.error}\n`); return; }
      io.out(`\n${kept.file}: the cluster's list (from Redis, enforced as well)  signed: ${kept.list.lastUpdate?.toISOString() ?? '?'}\n` + entriesTable(kept.list, subjects));
    }),
  );

  const refresh = crlCmd
    .command('refresh')
    .description('rewrite the list and the signed crl.pem with fresh last/next update dates (nothing added or removed)')
    .addOption(certsDirOption())
    .addOption(crlOption())
    .addOption(caOption())
    .addOption(caKeyOption())
    .addOption(crlDaysOption());
  for (const opt of redisOptions()) refresh.addOption(opt);
  refresh.action(
    action(refresh, async (o: CommonOpts) => {
      const p = resolvePkiPaths(o);
      const crl = resolveCrl(o.crl, p.dir);
      const redis = resolveRedis(o);
      const r = withLock(crl, () => {
        const w = save(readList(crl, signedCopyFor(crl, p.dir), io), crl, p, o.crlDays, io);
        io.out(report(w));
        return w;
      });
      await share(r, redis, io);
    }),
  );
}

function save(list: RevocationData, crl: string, p: PkiPaths, days: number | undefined, io: CommandIO) {
  const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : undefined);
  // a revocation is urgent: it is signed all the same, but the operator hears of the exposed key
  if (fs.existsSync(p.caKey)) {
    try {
      assertKeyPrivate(p.caKey);
    } catch {
      io.err(`warning: other users can read the CA key ${p.caKey}: anyone who does can issue certificates your server accepts (fix: chmod 600 ${p.caKey})\n`);
    }
  }
  const caCertPem = read(p.ca);
  return writeRevocation({
    crlPath: crl,
    format: list.format,
    // only the default list has <certs-dir>/crl.pem as its signed copy: written from another list
    // it would replace the copy the server falls back on when crl.json is lost (signedCopyFor)
    crlPemPath: signedCopyFor(crl, p.dir),
    caCertPem,
    caKeyPem: read(p.caKey),
    issuer: list.issuer ?? (caCertPem ? new X509Certificate(caCertPem).subject.replace(/\n/g, ', ') : undefined),
    entries: list.entries.values(),
    days,
  });
}

function entriesTable(l: RevocationData, subjects: Map<string, string>): string {
  if (!l.entries.size) return 'nothing revoked\n';
  const rows = [['serial', 'reason', 'date', 'subject']];
  for (const e of l.entries.values()) rows.push([e.serial, e.reason, e.date, e.subject ?? subjects.get(e.serial) ?? '']);
  return table(rows);
}

/** The list as the server reads it: the file, or when it is missing the signed copy beside it (said on stderr). */
function readList(crl: string, crlPem: string | undefined, io: CommandIO): RevocationData {
  const l = readRevocationFile(crl, crlPem);
  if (l.restoredFrom) io.err(`warning: ${crl} not found: using the ${l.entries.size} revocation(s) of its signed copy ${l.restoredFrom}, as the server does\n`);
  for (const w of l.warnings ?? []) io.err(`warning: ${crl}: ${w}\n`);
  return l;
}

/** With --redis (or COTSTREAM_REDIS_URL): the signed list to the cluster, which every node enforces. */
async function share(r: { pem?: string; unsigned?: string }, redis: ReturnType<typeof resolveRedis>, io: CommandIO): Promise<void> {
  if (!redis.url) return;
  const where = redactUrl(redis.url);
  if (!r.pem) throw new Error(`nothing sent to ${where}: only a CA-signed list is shared (${r.unsigned ?? 'none written'})`);
  let pushed: boolean;
  try {
    pushed = await pushCrl(redis.url, redis.tls, DEFAULT_CHANNEL, pemToDer(r.pem));
  } catch (err) {
    throw new Error(`the list is written, but not sent to ${where}: ${(err as Error).message} (\`cotstream crl refresh --redis URL\` sends it again)`);
  }
  io.out(pushed
    ? `sent to ${where}: every node on it enforces this list within a second\n`
    : `not sent to ${where}: it already holds a list signed later than this one\n`);
}

function report(r: { written: string[]; unsigned?: string; nextUpdate: Date }): string {
  let s = `wrote ${r.written.join(', ')} (next update ${r.nextUpdate.toISOString()})\n`;
  if (r.unsigned) s += `warning: no signed crl.pem written: ${r.unsigned}\n`;
  return s;
}

/** A serial, or a certificate file whose serial (and subject) we take. */
function resolveTarget(target: string, p: PkiPaths, io: CommandIO): { serial: string; subject?: string } {
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(target);
  } catch {
    /* not a file: a serial */
  }
  if (stat?.isFile()) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(fs.readFileSync(target));
    } catch (err) {
      throw new ConfigError(`${target} is not a certificate: ${(err as Error).message}`);
    }
    const ca = p.ca;
    if (fs.existsSync(ca) && !cert.checkIssued(new X509Certificate(fs.readFileSync(ca)))) {
      io.err(`warning: ${target} was not issued by ${ca}; revoking its serial anyway\n`);
    }
    return { serial: canonicalSerial(cert.serialNumber), subject: cert.subject.replace(/\n/g, ', ') };
  }
  let serial: string;
  try {
    serial = canonicalSerial(target);
  } catch {
    if (/[/\\]|\.(pem|crt|cer|der)$/i.test(target)) throw new ConfigError(`${target}: no such certificate file`);
    throw new ConfigError(`${JSON.stringify(target)} is neither a certificate file nor a hex serial number`);
  }
  const subject = clientSubjects(p.dir).get(serial);
  // a serial may belong to a certificate whose file is gone: revoked all the same, but a typo
  // would leave the device meant connected, so say so
  if (subject === undefined) io.err(`warning: no certificate in ${p.clientsDir} has serial ${serial}: revoking it anyway (check it is the one meant)\n`);
  return { serial, subject };
}

/** Subjects of the client certificates we issued, by serial, so a bare serial still shows a name. */
function clientSubjects(certsDir: string): Map<string, string> {
  const out = new Map<string, string>();
  const dir = pkiPaths(certsDir).clientsDir;
  let files: string[] = [];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.pem'));
  } catch {
    return out;
  }
  for (const f of files) {
    try {
      const c = new X509Certificate(fs.readFileSync(path.join(dir, f)));
      out.set(canonicalSerial(c.serialNumber), c.subject.replace(/\n/g, ', '));
    } catch {
      /* not a certificate: skip */
    }
  }
  return out;
}

/** Serialize concurrent read-modify-write of the list (two operators revoking at once lose nothing). */
function withLock<T>(file: string, fn: () => T): T {
  const lock = `${file}.lock`;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: DIR_MODE });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      fs.closeSync(fs.openSync(lock, 'wx', 0o600));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 30_000) fs.rmSync(lock, { force: true }); // left by a crash
      } catch {
        /* gone meanwhile */
      }
      if (Date.now() > deadline) throw new Error(`${lock} is held by another revoke; remove it if no other cotstream command runs`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}
