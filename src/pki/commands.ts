// `cotstream certs init | client | show`
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Option, type Command } from 'commander';
import { initPki, issueClient, issueServer, defaultHosts, DEFAULTS } from './ca.ts';
import { canonicalSerial } from '../auth/serial.ts';
import { action, caKeyOption, caOption, certOption, certsDirOption, collectList, crlOption, keyOption, parsePositiveInt, resolveCrl, resolvePkiPaths, stdio, table, type CommandIO, type PkiFileFlags } from './options.ts';
import { readClusterList, readRevocationFile } from '../auth/revocation-file.ts';
import { signedCopyFor } from './paths.ts';

export function registerCertsCommands(program: Command, io: CommandIO = stdio): void {
  const certs = program.command('certs').description('create and inspect the PKI: CA, server and client certificates');

  const init = certs
    .command('init')
    .description('create the CA and the server certificate in the certs dir (never overwrites without --force)')
    .addOption(certsDirOption())
    .addOption(caOption())
    .addOption(caKeyOption())
    .addOption(certOption())
    .addOption(keyOption())
    .option('--bits <n>', `RSA key size (default: ${DEFAULTS.bits}; 4096 possible)`, parsePositiveInt('--bits'))
    .option(
      '--host <names>',
      `host names / IP addresses the server certificate is valid for, comma-separated or repeated (default: ${defaultHosts().join(',')})`,
      collectList,
    )
    .option('--ca-name <cn>', `common name of the CA (default: "${DEFAULTS.caName}")`)
    .option('--ca-days <n>', `CA validity in days (default: ${DEFAULTS.caDays})`, parsePositiveInt('--ca-days'))
    .option('--days <n>', `server certificate validity in days (default: ${DEFAULTS.days})`, parsePositiveInt('--days'))
    .option('--force', 'overwrite an existing CA and server certificate (invalidates every client certificate!)', false);
  init.action(
    action(init, async (o: PkiFileFlags & { bits?: number; host?: string[]; caName?: string; caDays?: number; days?: number; force: boolean }) => {
      const files = resolvePkiPaths(o);
      const p = await initPki({
        certsDir: files.dir,
        files,
        bits: o.bits,
        hosts: o.host,
        caName: o.caName,
        caDays: o.caDays,
        days: o.days,
        force: o.force,
      });
      const rel = (f: string) => (path.dirname(f) === p.dir ? path.basename(f) : f);
      const [ca, caKey, cert, key] = [p.ca, p.caKey, p.cert, p.key].map(rel);
      const w = Math.max(ca!.length, caKey!.length, cert!.length, key!.length) + 3;
      io.out(
        `created in ${p.dir}:\n` +
          `  ${ca!.padEnd(w)}CA certificate (give to clients as the truststore)\n` +
          `  ${caKey!.padEnd(w)}CA private key (0600; keep it secret, it signs every certificate)\n` +
          `  ${cert!.padEnd(w)}server certificate, valid for ${(o.host?.length ? o.host : defaultHosts()).join(', ')}\n` +
          `  ${key!.padEnd(w)}server private key (0600)\n` +
          `next: cotstream certs client NAME --package --host <address phones reach>\n`,
      );
      for (const w of p.warnings) io.err(`warning: ${w}\n`);
    }),
  );

  const server = certs
    .command('server')
    .description('issue a new server certificate and key from the existing CA (renewal, new addresses): client certificates stay valid; SIGHUP (or restart) the server to use it')
    .addOption(certsDirOption())
    .addOption(caOption())
    .addOption(caKeyOption())
    .addOption(certOption())
    .addOption(keyOption())
    .option(
      '--host <names>',
      `host names / IP addresses the certificate is valid for, comma-separated or repeated (default: those of the certificate it replaces; without one: ${defaultHosts().join(',')})`,
      collectList,
    )
    .option('--bits <n>', `RSA key size (default: ${DEFAULTS.bits})`, parsePositiveInt('--bits'))
    .option('--days <n>', `validity in days (default: ${DEFAULTS.days})`, parsePositiveInt('--days'))
    .option('--force', 'replace an existing server certificate and key (the old pair is kept as server.pem.old, server.key.old)', false);
  server.action(
    action(server, async (o: PkiFileFlags & { host?: string[]; bits?: number; days?: number; force: boolean }) => {
      const files = resolvePkiPaths(o);
      const r = await issueServer({ certsDir: files.dir, files, hosts: o.host, bits: o.bits, days: o.days, force: o.force });
      io.out(
        `server certificate ${r.cert} (serial ${r.serial}) and key ${r.key} (0600)\n` +
          `  valid for ${r.hosts.join(', ')}${r.hostsFrom === 'previous' ? ' (the names of the certificate it replaces; --host to change them)' : ''} until ${r.notAfter.toISOString()}, signed by ${r.ca}\n` +
          'client certificates and data packages stay valid. Send the server (every node) SIGHUP, or restart it, to use it.\n',
      );
      for (const w of r.warnings) io.err(`warning: ${w}\n`);
    }),
  );

  const client = certs
    .command('client')
    .description('issue a client certificate: NAME.pem, NAME.key, NAME.p12 (for ATAK), and with --package the data packages NAME.zip (ATAK, WinTAK) and NAME-itak.zip (iTAK)')
    .argument('<name>', 'client name, used as certificate CN and file name (letters, digits, . _ -)')
    .addOption(certsDirOption())
    .addOption(caOption())
    .addOption(caKeyOption())
    .addOption(certOption())
    .option('--out <dir>', 'output directory (default: <certs-dir>/clients)')
    .addOption(new Option('--password <pw>', 'password of NAME.p12 and the truststore (default: a random one, printed once; stored nowhere but inside the data package); the variable keeps it out of `ps` and shell history').env('COTSTREAM_P12_PASSWORD'))
    .option('--package', 'also write NAME-truststore.p12 (CA certificate only) and the data packages NAME.zip (ATAK, WinTAK) and NAME-itak.zip (iTAK)', false)
    .option('--host <host>', 'server host name or IPv4 address the data packages dial, without port (default: this machine\'s first non-loopback IPv4 address if the server certificate is valid for it, else the certificate\'s first name)')
    // the server's own variable: a package made where the server runs on another port dials that one
    .addOption(new Option('--port <port>', `server TLS port written into the data package (default: ${DEFAULTS.port})`).env('COTSTREAM_PORT').argParser(parsePositiveInt('--port')))
    .option('--bits <n>', `RSA key size (default: ${DEFAULTS.bits})`, parsePositiveInt('--bits'))
    .option('--days <n>', `validity in days (default: ${DEFAULTS.days})`, parsePositiveInt('--days'))
    .option('--force', 'overwrite existing files of this client', false);
  client.action(
    action(
      client,
      async (
        name: string,
        o: PkiFileFlags & { out?: string; password?: string; package: boolean; host?: string; port?: number; bits?: number; days?: number; force: boolean },
      ) => {
        const files = resolvePkiPaths(o);
        const r = await issueClient({
          certsDir: files.dir,
          files: { ca: files.ca, caKey: files.caKey, cert: files.cert },
          name,
          outDir: o.out,
          // an empty one (COTSTREAM_P12_PASSWORD= in an env file) is none: a random one, printed
          password: o.password || undefined,
          package: o.package,
          host: o.host,
          port: o.port,
          bits: o.bits,
          days: o.days,
          force: o.force,
        });
        let s =
          `client ${r.name}  serial ${r.serial}\n` +
          `  ${r.cert}\n  ${r.key}\n  ${r.p12}\n`;
        if (r.package) {
          // the address is a guess unless --host named it: say which one the phone will dial
          s += `  ${r.truststore}\n  ${r.package}   <- import this one file in ATAK / WinTAK\n`;
          s += `  ${r.itakPackage}   <- or this one in iTAK\n`;
          const from = { given: '', machine: ': this machine\'s first non-loopback address; --host to choose', certificate: ': the server certificate\'s name; --host to choose' }[r.connectFrom ?? 'given'];
          s += `data package connects to ${r.connect} (ssl)${from}\n`;
        }
        if (!o.password) {
          s += `PKCS#12 password${r.truststore ? ' (client and truststore)' : ''}: ${r.password}\n`;
          s += 'It is shown only now.\n';
        }
        io.out(s);
        for (const w of r.warnings) io.err(`warning: ${w}\n`);
      },
    ),
  );

  const show = certs
    .command('show')
    .description('list the CA, server and client certificates with serial, expiry and status (valid, EXPIRED, or REVOKED per the revocation list or the cluster list kept from Redis)')
    .addOption(certsDirOption())
    .addOption(caOption())
    .addOption(certOption())
    .addOption(crlOption());
  show.action(
    action(show, (o: PkiFileFlags & { crl?: string }) => {
      const p = resolvePkiPaths(o);
      // what the server would say of each certificate: revoked per the same list, or expired
      const crl = resolveCrl(o.crl, p.dir);
      let revoked = new Map<string, { reason: string }>();
      let crlNote = '';
      try {
        revoked = readRevocationFile(crl, signedCopyFor(crl, p.dir)).entries; // as the server reads it
      } catch (err) {
        crlNote = `warning: revocation list ${crl} unreadable (${(err as Error).message}): revoked status not shown\n`;
      }
      // and the cluster's list the nodes here took from Redis (`revoke --redis`): enforced as well
      const kept = readClusterList(p.dir);
      if (kept !== null && 'error' in kept) crlNote += `warning: ${kept.file} unreadable (${kept.error}): the cluster's revocations not shown\n`;
      else if (kept !== null) {
        for (const [serial, e] of kept.list.entries) if (!revoked.has(serial)) revoked.set(serial, { reason: `${e.reason}, cluster list` });
      }
      const rows: string[][] = [['file', 'subject', 'serial', 'not after', 'status']];
      const label = (file: string) => (file.startsWith(p.dir + path.sep) ? path.relative(p.dir, file) : file);
      const add = (file: string) => {
        try {
          const c = new X509Certificate(fs.readFileSync(file));
          const serial = canonicalSerial(c.serialNumber);
          const r = revoked.get(serial);
          const status = r ? `REVOKED (${r.reason})` : Date.parse(c.validTo) < Date.now() ? 'EXPIRED' : 'valid';
          rows.push([label(file), c.subject.replace(/\n/g, ', '), serial, new Date(c.validTo).toISOString(), status]);
        } catch (err) {
          rows.push([label(file), `unreadable: ${(err as Error).message}`, '', '', '']);
        }
      };
      for (const f of [p.ca, p.cert]) if (fs.existsSync(f)) add(f);
      if (fs.existsSync(p.clientsDir)) {
        for (const f of fs.readdirSync(p.clientsDir).sort()) if (f.endsWith('.pem')) add(path.join(p.clientsDir, f));
      }
      if (rows.length === 1) throw new Error(`no certificates in ${p.dir} (run \`cotstream certs init\`)`);
      io.out(crlNote + table(rows));
    }),
  );
}
