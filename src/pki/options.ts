// Shared option plumbing for the PKI and revocation subcommands: every one takes --certs-dir (and
// --crl where it matters) with the same environment variables as `cotstream start`.
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { pkiPaths, type PkiPaths } from './paths.ts';
import { checkRedis, ConfigError, OPTIONS } from '../config.ts';
import type { RedisTlsFiles } from '../bus/redis.ts';

/** `cotstream start`'s OPTIONS entry for an option: one list of variables and defaults for both */
const optionOf = (key: string) => OPTIONS.find((o) => o.key === key)!;
const envOf = (key: string): readonly string[] => optionOf(key).env;

export const ENV = {
  certsDir: envOf('certsDir'),
  crl: envOf('crl'),
  ca: envOf('ca'),
  /** not a server option: the server never reads the CA key */
  caKey: ['COTSTREAM_CA_KEY', 'FTS_CAKEYDIR'],
  cert: envOf('cert'),
  key: envOf('key'),
  redis: envOf('redis'),
  redisCa: envOf('redisCa'),
  redisCert: envOf('redisCert'),
  redisKey: envOf('redisKey'),
};

const DEFAULT_CERTS_DIR = String(optionOf('certsDir').def);

/** Where subcommands print. Tests pass their own to read what a command printed. */
export interface CommandIO {
  out: (s: string) => void;
  err: (s: string) => void;
}

export const stdio: CommandIO = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

function fromEnv(names: readonly string[], env: NodeJS.ProcessEnv): string | undefined {
  for (const n of names) {
    const v = env[n];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

export function certsDirOption(): Option {
  return new Option(
    '--certs-dir <dir>',
    `PKI directory holding ca.pem, ca.key, server.pem, server.key, clients/ (env ${ENV.certsDir.join(', alias ')}; default: ${DEFAULT_CERTS_DIR})`,
  );
}

/** `revoke` / `crl refresh` push the signed list to the cluster's Redis (bus/crl-share.ts). */
export function redisOptions(): Option[] {
  return [
    new Option('--redis <url>', `the Redis of a scale-out cluster: the signed list goes there too, and every node enforces it within a second (env ${ENV.redis.join(', alias ')}; default: none)`),
    new Option('--redis-ca <file>', `CA certificate(s) of a rediss:// server (env ${ENV.redisCa.join(', alias ')}; default: the system CAs)`),
    new Option('--redis-cert <file>', `our client certificate, for a rediss:// server that asks for one (env ${ENV.redisCert.join(', alias ')}; default: none)`),
    new Option('--redis-key <file>', `the key of --redis-cert (env ${ENV.redisKey.join(', alias ')}; default: none)`),
  ];
}

/** Flag, else environment ('' when neither); paths absolute. */
export function resolveRedis(o: { redis?: string; redisCa?: string; redisCert?: string; redisKey?: string }, env: NodeJS.ProcessEnv = process.env): { url: string; tls: RedisTlsFiles } {
  const file = (flag: string | undefined, names: readonly string[]): string => {
    const f = flag ?? fromEnv(names, env);
    return f ? path.resolve(f) : '';
  };
  const tls = { ca: file(o.redisCa, ENV.redisCa), cert: file(o.redisCert, ENV.redisCert), key: file(o.redisKey, ENV.redisKey) };
  const url = o.redis ?? fromEnv(ENV.redis, env) ?? '';
  // as start checks it: a mistyped scheme went to ioredis as a Unix socket path, password and all,
  // and came back in its error message
  // (no URL: a TLS file in an environment shared with the nodes is not this command's business)
  checkRedis(url, tls, o.redis !== undefined ? '--redis' : `${ENV.redis.find((n) => env[n]) ?? ENV.redis[0]} (--redis)`, 'ignore');
  return { url, tls };
}

export function crlOption(): Option {
  return new Option(
    '--crl <file>',
    `revocation list: our JSON, or a PEM/DER X.509 CRL such as FreeTAKServer's FTS_CRL.json (env ${ENV.crl.join(', alias ')}; default: <certs-dir>/crl.json)`,
  );
}

/**
 * The CA (and server) files can live outside the certs dir, as `start --ca/--cert/--key` allow:
 * the commands that sign or check with the CA take the same flags and variables, so one
 * environment serves `start`, `certs`, `revoke` and `crl` alike. (Before, a `COTSTREAM_CA` the
 * server honoured was ignored here: `certs client` signed with whatever CA sat in the certs dir,
 * and the server refused the certificate it had just issued.)
 */
export function caOption(): Option {
  return new Option('--ca <file>', `CA certificate (env ${ENV.ca.join(', alias ')}; default: <certs-dir>/ca.pem)`);
}

export function caKeyOption(): Option {
  return new Option('--ca-key <file>', `CA private key (env ${ENV.caKey.join(', alias ')}; default: <certs-dir>/ca.key)`);
}

export function certOption(): Option {
  return new Option('--cert <file>', `server certificate (env ${ENV.cert.join(', alias ')}; default: <certs-dir>/server.pem)`);
}

export function keyOption(): Option {
  return new Option('--key <file>', `server private key (env ${ENV.key.join(', alias ')}; default: <certs-dir>/server.key)`);
}

export interface PkiFileFlags {
  certsDir?: string;
  ca?: string;
  caKey?: string;
  cert?: string;
  key?: string;
}

/** Every PKI path: the certs dir's files, each overridden by its flag, else its variable. */
export function resolvePkiPaths(o: PkiFileFlags, env: NodeJS.ProcessEnv = process.env): PkiPaths {
  const p = pkiPaths(resolveCertsDir(o.certsDir, env));
  const pick = (flag: string | undefined, names: readonly string[], def: string) => path.resolve(flag ?? fromEnv(names, env) ?? def);
  return {
    ...p,
    ca: pick(o.ca, ENV.ca, p.ca),
    caKey: pick(o.caKey, ENV.caKey, p.caKey),
    cert: pick(o.cert, ENV.cert, p.cert),
    key: pick(o.key, ENV.key, p.key),
  };
}

/** Flag, else environment, else default — the same precedence as the server's config. */
export function resolveCertsDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(flag ?? fromEnv(ENV.certsDir, env) ?? DEFAULT_CERTS_DIR);
}

export function resolveCrl(flag: string | undefined, certsDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(flag ?? fromEnv(ENV.crl, env) ?? path.join(certsDir, 'crl.json'));
}

export function parsePositiveInt(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} expects a whole number, got ${JSON.stringify(v)}`);
    return Number(v);
  };
}

/** Repeatable and comma-separated: --host a --host b,c → [a, b, c]. */
export function collectList(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), ...v.split(',').map((s) => s.trim()).filter(Boolean)];
}

/** Run an async action; a thrown error becomes commander's error (message, exit code 1). */
export function action<A extends unknown[]>(cmd: Command, fn: (...args: A) => Promise<void> | void) {
  return async (...args: A): Promise<void> => {
    try {
      await fn(...args);
    } catch (err) {
      if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string' && (err as { code: string }).code.startsWith('commander.')) throw err;
      // a command that failed at its work was used correctly: the message alone, not the help
      // (which would bury the one line that matters under twenty)
      cmd.showHelpAfterError(false);
      // a bad value (a name, a password, a serial) is a usage error: exit 2, as for a bad option
      cmd.error(`error: ${(err as Error).message}`, { exitCode: err instanceof ConfigError ? 2 : 1 });
    }
  };
}

/** Plain aligned columns for terminal listings. */
export function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ')).join('\n') + '\n';
}
