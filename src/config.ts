// One validated, frozen Config from flags + environment + optional JSON config file.
// The option table below is the single source for `cotstream start --help`, env names and defaults.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { parseAllowList } from './net/addresses.ts';
import { redactUrl } from './ops/log.ts';
import { assertKeyPrivate } from './pki/files.ts';

type Kind = 'string' | 'int' | 'port' | 'bytes' | 'ms' | 'bool';

export interface OptionSpec {
  key: keyof RawOptions;
  flag: string;
  env: string[];
  kind: Kind;
  def?: string | number;
  help: string;
  /** names a file or directory: a relative one in a config file is taken from the file's directory */
  path?: true;
}

export interface RawOptions {
  host: string; port: number; tcpPort: number; metricsHost: string; metricsPort: number;
  certsDir: string; ca: string; cert: string; key: string; crl: string;
  handshakeTimeout: number; idleTimeout: number; redis: string; redisCa: string; redisCert: string; redisKey: string; busHeartbeat: number; maxFrameBytes: number;
  logLevel: string; logBuffer: number; maxClients: number; maxClientsPerIp: number; maxSendBuffer: number;
  slowConsumerTimeout: number; writeCoalesce: number; rateEvents: number; rateBurst: number; rateBytes: number;
  nodeId: string; metricsToken: string; metricsAllow: string; proxyProtocol: string; announce: boolean;
}

export const OPTIONS: OptionSpec[] = [
  { key: 'host', flag: '--host <addr>', env: ['COTSTREAM_HOST'], kind: 'string', def: '0.0.0.0', help: 'address the TLS CoT listener binds' },
  { key: 'port', flag: '--port <n>', env: ['COTSTREAM_PORT'], kind: 'port', def: 8089, help: 'TLS (mutual auth) CoT port (0: any free port)' },
  { key: 'tcpPort', flag: '--tcp-port <n>', env: ['COTSTREAM_TCP_PORT'], kind: 'port', def: 'off', help: 'plaintext CoT port, UNAUTHENTICATED: opt-in, logs a warning; off = no plaintext listener' },
  { key: 'metricsHost', flag: '--metrics-host <addr>', env: ['COTSTREAM_METRICS_HOST'], kind: 'string', def: '0.0.0.0', help: 'address of the /metrics /healthz /readyz HTTP listener' },
  { key: 'metricsPort', flag: '--metrics-port <n>', env: ['COTSTREAM_METRICS_PORT'], kind: 'port', def: 9089, help: 'HTTP port for /metrics /healthz /readyz; off = no HTTP listener' },
  { key: 'certsDir', flag: '--certs-dir <dir>', env: ['COTSTREAM_CERTS_DIR', 'FTS_CERTS_PATH'], kind: 'string', def: './certs', help: 'PKI directory (ca.pem, server.pem, server.key, crl.json)', path: true },
  { key: 'ca', flag: '--ca <file>', env: ['COTSTREAM_CA', 'FTS_CADIR'], kind: 'string', help: 'CA certificate that signs client certificates (default <certs-dir>/ca.pem)', path: true },
  { key: 'cert', flag: '--cert <file>', env: ['COTSTREAM_CERT', 'FTS_SERVER_PEMDIR'], kind: 'string', help: 'server certificate (default <certs-dir>/server.pem)', path: true },
  { key: 'key', flag: '--key <file>', env: ['COTSTREAM_KEY', 'FTS_UNENCRYPTED_KEYDIR', 'FTS_SERVER_KEYDIR'], kind: 'string', help: 'server private key, mode 0600 (default <certs-dir>/server.key)', path: true },
  { key: 'crl', flag: '--crl <file>', env: ['COTSTREAM_CRL', 'FTS_CRLDIR'], kind: 'string', help: 'revocation list: our JSON, FreeTAKServer JSON/PEM, PEM or DER CRL (default <certs-dir>/crl.json)', path: true },
  { key: 'handshakeTimeout', flag: '--handshake-timeout <ms>', env: ['COTSTREAM_HANDSHAKE_TIMEOUT_MS'], kind: 'ms', def: 5000, help: 'close connections that have not completed the TLS handshake by then (at least 1 ms)' },
  { key: 'idleTimeout', flag: '--idle-timeout <ms>', env: ['COTSTREAM_IDLE_TIMEOUT_MS'], kind: 'ms', def: 120000, help: 'close a client after this long without a byte received, once its latest SA is stale (held at most 15 min); 0 = off' },
  { key: 'redis', flag: '--redis <url>', env: ['COTSTREAM_REDIS_URL'], kind: 'string', def: '', help: 'redis:// or rediss:// URL for scale-out (prefer the env var when it holds a password: flags show in ps); empty = in-process bus' },
  { key: 'redisCa', flag: '--redis-ca <file>', env: ['COTSTREAM_REDIS_CA'], kind: 'string', def: '', help: 'CA certificate(s) that sign the rediss:// server certificate; empty = the system CAs', path: true },
  { key: 'redisCert', flag: '--redis-cert <file>', env: ['COTSTREAM_REDIS_CERT'], kind: 'string', def: '', help: 'our client certificate for a rediss:// server that asks for one (Redis\'s tls-auth-clients, on by default); with --redis-key', path: true },
  { key: 'redisKey', flag: '--redis-key <file>', env: ['COTSTREAM_REDIS_KEY'], kind: 'string', def: '', help: 'the private key of --redis-cert', path: true },
  { key: 'busHeartbeat', flag: '--bus-heartbeat <ms>', env: ['COTSTREAM_BUS_HEARTBEAT_MS'], kind: 'ms', def: 5000, help: 'Redis bus liveness beat; a node silent for 3 beats is gone and its clients are announced disconnected; our own beat not back through Redis by the next one means Redis hangs (node unready, reconnects)' },
  { key: 'maxFrameBytes', flag: '--max-frame-bytes <n>', env: ['COTSTREAM_MAX_FRAME_BYTES'], kind: 'bytes', def: 1048576, help: 'largest accepted CoT event; larger ones are discarded and counted' },
  { key: 'logLevel', flag: '--log-level <level>', env: ['COTSTREAM_LOG_LEVEL'], kind: 'string', def: 'info', help: 'fatal|error|warn|info|debug|trace|silent (debug logs every event)' },
  { key: 'logBuffer', flag: '--log-buffer <bytes>', env: ['COTSTREAM_LOG_BUFFER'], kind: 'bytes', def: 16777216, help: 'log output held in memory while stdout does not take it (a stalled log reader); further lines are dropped and counted (cot_log_lines_dropped_total); 0 = unlimited' },
  { key: 'maxClients', flag: '--max-clients <n>', env: ['COTSTREAM_MAX_CLIENTS'], kind: 'int', def: 10000, help: 'connections accepted at once; further ones are refused; 0 = unlimited' },
  { key: 'maxClientsPerIp', flag: '--max-clients-per-ip <n>', env: ['COTSTREAM_MAX_CLIENTS_PER_IP'], kind: 'int', def: 64, help: 'connections accepted at once from one IP address, and new connections per second from it (burst: as many); 0 = unlimited' },
  { key: 'proxyProtocol', flag: '--proxy-protocol <cidrs>', env: ['COTSTREAM_PROXY_PROTOCOL'], kind: 'string', def: '', help: 'comma-separated IPs/CIDRs of TCP load balancers that start each connection with a PROXY protocol v1/v2 header (HAProxy send-proxy-v2): the client address it names is used for limits and logs; empty = none' },
  { key: 'maxSendBuffer', flag: '--max-send-buffer <bytes>', env: ['COTSTREAM_MAX_SEND_BUFFER'], kind: 'bytes', def: 4194304, help: 'bytes queued for one client before its events are dropped' },
  { key: 'slowConsumerTimeout', flag: '--slow-consumer-timeout <ms>', env: ['COTSTREAM_SLOW_CONSUMER_TIMEOUT_MS'], kind: 'ms', def: 10000, help: 'disconnect a client that stays over --max-send-buffer this long' },
  { key: 'writeCoalesce', flag: '--write-coalesce <ms>', env: ['COTSTREAM_WRITE_COALESCE_MS'], kind: 'ms', def: 1, help: 'a client written to less than this long ago gets its next events in one write that long after the last (fewer TLS records under load, at most that much added latency); 0 = one write per event-loop turn' },
  { key: 'rateEvents', flag: '--rate-events <n>', env: ['COTSTREAM_RATE_EVENTS'], kind: 'int', def: 100, help: 'sustained events/s accepted from one client; 0 = unlimited' },
  { key: 'rateBurst', flag: '--rate-burst <n>', env: ['COTSTREAM_RATE_BURST'], kind: 'int', def: 500, help: 'burst of events accepted from one client above the sustained rate' },
  { key: 'rateBytes', flag: '--rate-bytes <bytes>', env: ['COTSTREAM_RATE_BYTES'], kind: 'bytes', def: 1048576, help: 'sustained bytes/s accepted from one client (burst: 5x); reading from a client that sends over twice this pauses; 0 = unlimited' },
  { key: 'nodeId', flag: '--node-id <id>', env: ['COTSTREAM_NODE_ID'], kind: 'string', def: '', help: 'this node\'s id on the bus (default: hostname + random suffix)' },
  { key: 'metricsToken', flag: '--metrics-token <token>', env: ['COTSTREAM_METRICS_TOKEN'], kind: 'string', def: '', help: 'require "Authorization: Bearer <token>" on /metrics (prefer the env var: flags show in ps)' },
  { key: 'metricsAllow', flag: '--metrics-allow <cidrs>', env: ['COTSTREAM_METRICS_ALLOW'], kind: 'string', def: '', help: 'comma-separated IPs/CIDRs allowed to read /metrics; empty = any' },
  { key: 'announce', flag: '--no-announce', env: ['COTSTREAM_ANNOUNCE'], kind: 'bool', def: 1, help: 'do not send the TAK protocol (t-x-takp-v) announcement to new clients' },
];

export interface Config extends RawOptions {
  ca: string; cert: string; key: string; crl: string;
}

const UNITS: Record<string, number> = { '': 1, k: 1024, kb: 1024, kib: 1024, m: 1048576, mb: 1048576, mib: 1048576, g: 1073741824, gb: 1073741824, gib: 1073741824 };

export class ConfigError extends Error {}

/**
 * `start` and the commands that push to Redis: the URL and its TLS files, checked before anything
 * connects. A problem with a local file is said by its flag (else it is retried forever as "Redis
 * unreachable"), and TLS files with a redis:// URL are refused: that connection would be plaintext,
 * the password and every event in clear, while the operator believes TLS is on.
 */
export function checkRedis(url: string, tls: { ca: string; cert: string; key: string }, urlSource = '--redis', unusedFiles: 'check' | 'ignore' = 'check'): void {
  if (url && !/^rediss?:\/\//.test(url)) throw new ConfigError(`${urlSource}: expected a redis:// or rediss:// URL`);
  if (url && !URL.canParse(url)) throw new ConfigError(`${urlSource}: not a valid URL (percent-encode special characters of the password)`);
  if (!tls.cert !== !tls.key) throw new ConfigError('--redis-cert and --redis-key go together (a client certificate for Redis needs its key)');
  const files = ([['--redis-ca', tls.ca], ['--redis-cert', tls.cert], ['--redis-key', tls.key]] as const).filter(([, f]) => f);
  // without a URL there is no bus and the files are not used (an environment shared with nodes
  // that have one): start still names a missing one, the PKI commands ('ignore') do not look
  if (!url && unusedFiles === 'ignore') return;
  for (const [flag, f] of files) if (!existsSync(f)) throw new ConfigError(`${flag}: ${f} does not exist`);
  if (files.length === 0 || !url) return;
  if (!url.startsWith('rediss://')) {
    throw new ConfigError(`${files.map(([flag]) => flag).join(', ')} given, but ${urlSource} is a plaintext redis:// URL: use rediss:// for TLS`);
  }
  if (tls.ca) {
    try {
      new X509Certificate(readFileSync(tls.ca));
    } catch (err) {
      throw new ConfigError(`--redis-ca: no certificate in ${tls.ca} (${(err as Error).message})`);
    }
  }
  if (tls.key) {
    let key: KeyObject;
    let cert: X509Certificate;
    try {
      assertKeyPrivate(tls.key);
      const pem = readFileSync(tls.key);
      try {
        key = createPrivateKey(pem);
      } catch (err) {
        throw new Error(/ENCRYPTED/.test(pem.toString('latin1')) ? `${tls.key} is passphrase-protected: cotstream needs it unencrypted, kept safe by its mode 0600` : `cannot read the private key ${tls.key}: ${(err as Error).message}`);
      }
    } catch (err) {
      throw new ConfigError(`--redis-key: ${(err as Error).message}`);
    }
    try {
      cert = new X509Certificate(readFileSync(tls.cert));
    } catch (err) {
      throw new ConfigError(`--redis-cert: no certificate in ${tls.cert} (${(err as Error).message})`);
    }
    if (!cert.checkPrivateKey(key)) throw new ConfigError(`--redis-key: ${tls.key} is not the key of ${tls.cert}`);
  }
}

/** The secrets a config file holds (the metrics token, a Redis password) when other users can read
 *  it, for a start warning; none when it holds none or is private. */
export function exposedSecrets(configFile: string): string[] {
  let file: Record<string, unknown>;
  try {
    if ((statSync(configFile).mode & 0o004) === 0) return [];
    file = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  } catch {
    return [];
  }
  const out: string[] = [];
  if (typeof file.metricsToken === 'string' && file.metricsToken !== '') out.push('metricsToken');
  if (typeof file.redis === 'string' && URL.canParse(file.redis)) {
    const u = new URL(file.redis);
    if (u.password !== '' || /(^|&)pass(word)?=/i.test(u.search.slice(1))) out.push('the Redis password (redis)');
  }
  return out;
}

/** The host of a plaintext redis:// URL that is not this machine ('' otherwise): what the node
 *  sends there (every event, the Redis password) crosses the network in clear. */
export function redisInClear(url: string): string {
  if (!url.startsWith('redis://') || !URL.canParse(url)) return '';
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const loopback = host === 'localhost' || host.endsWith('.localhost') || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '';
  return loopback ? '' : host;
}

/** A JSON syntax error without V8's quote of the text around it, which may be a secret (a token
 *  written without quotes): where it is, and what is wrong. */
function jsonError(text: string, err: SyntaxError): string {
  const m = /^(.*?) in JSON at position (\d+)/s.exec(err.message);
  if (m === null) return 'not valid JSON: an unexpected character (strings take double quotes; no comments, no trailing commas)';
  const before = text.slice(0, Number(m[2]));
  return `${m[1]} at line ${before.split('\n').length}, column ${before.length - before.lastIndexOf('\n')}`;
}

/** Node's timers take at most 2^31-1 ms (~24.8 days); a longer one fires after 1 ms, every time. */
const MAX_MS = 2 ** 31 - 1;

function parseValue(spec: OptionSpec, raw: unknown, source: string): string | number | boolean {
  if (spec.kind === 'bool') {
    if (typeof raw === 'boolean') return raw;
    const s = String(raw).toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(s)) return true;
    if (['0', 'false', 'no', 'off'].includes(s)) return false;
    throw new ConfigError(`${source}: expected true/false, got "${raw}"`);
  }
  if (spec.kind === 'string') return String(raw);
  const s = String(raw).trim().toLowerCase();
  let m: RegExpMatchArray | null;
  if (spec.kind === 'bytes') {
    m = /^(\d+)\s*([kmg]i?b?)?$/.exec(s);
    if (!m) throw new ConfigError(`${source}: expected a byte count like 1048576 or 4MiB, got "${raw}"`);
    return Number(m[1]) * UNITS[m[2] ?? ''];
  }
  if (spec.kind === 'ms') {
    m = /^(\d+)\s*(ms|s|m)?$/.exec(s);
    if (!m) throw new ConfigError(`${source}: expected milliseconds like 5000 (or 5s), got "${raw}"`);
    const mult = m[2] === 's' ? 1000 : m[2] === 'm' ? 60000 : 1;
    const ms = Number(m[1]) * mult;
    if (ms > MAX_MS) throw new ConfigError(`${source}: at most ${MAX_MS} ms (24.8 days), got "${raw}"`);
    return ms;
  }
  if (spec.kind === 'port') {
    if (s === 'off' || s === '') return -1;
    if (!/^\d+$/.test(s) || Number(s) > 65535) throw new ConfigError(`${source}: expected a port number (0-65535) or "off", got "${raw}"`);
    return Number(s);
  }
  if (!/^\d+$/.test(s)) throw new ConfigError(`${source}: expected a non-negative integer, got "${raw}"`);
  return Number(s);
}

/**
 * Resolve every option: command-line flag, else environment variable (first listed wins, so the
 * COTSTREAM_ name beats the FreeTAKServer alias), else config file, else default.
 */
export function buildConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env, configFile?: string): Config {
  let file: Record<string, unknown> = {};
  if (configFile) {
    let parsed: unknown;
    let text = '';
    try {
      text = readFileSync(configFile, 'utf8');
      parsed = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`config file ${configFile}: ${err instanceof SyntaxError ? jsonError(text, err) : (err as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${configFile}: expected a JSON object like {"port": 8089}`);
    }
    file = parsed as Record<string, unknown>;
    // a misspelt key would silently leave its option at the default: refuse it instead
    const known = new Set<string>(OPTIONS.map((o) => o.key));
    const unknown = Object.keys(file).filter((k) => !known.has(k));
    if (unknown.length) {
      throw new ConfigError(`config file ${configFile}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (known: ${[...known].join(', ')})`);
    }
  }
  const out: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const spec of OPTIONS) {
    let raw: unknown;
    let source = spec.flag.split(' ')[0];
    const flagVal = flags[spec.key];
    // commander gives `announce: true` by default for --no-announce; treat only false as explicit
    const fromFlag = spec.kind === 'bool' ? flagVal === false : flagVal !== undefined;
    if (fromFlag) raw = flagVal;
    else {
      const envName = spec.env.find((e) => env[e] !== undefined && env[e] !== '');
      if (envName) { raw = env[envName]; source = envName; }
      else if (file[spec.key] !== undefined) {
        raw = file[spec.key];
        source = `${configFile}:${spec.key}`;
        // a relative path in the file means beside the file, whatever directory the service starts in
        if (spec.path && typeof raw === 'string' && raw !== '' && !isAbsolute(raw)) raw = resolve(dirname(resolve(configFile!)), raw);
      }
      else raw = spec.def;
    }
    out[spec.key] = raw === undefined ? undefined : parseValue(spec, raw, source);
    sources[spec.key] = source;
  }
  // where a bad value came from: the flag, or the variable / config key that stood in for it
  const src = (key: string): string => {
    const flag = OPTIONS.find((o) => o.key === key)!.flag.split(' ')[0]!;
    return sources[key] === flag ? flag : `${sources[key]} (${flag})`;
  };
  const certsDir = resolve(String(out.certsDir));
  out.certsDir = certsDir;
  out.ca = resolve(String(out.ca ?? join(certsDir, 'ca.pem')));
  out.cert = resolve(String(out.cert ?? join(certsDir, 'server.pem')));
  out.key = resolve(String(out.key ?? join(certsDir, 'server.key')));
  out.crl = resolve(String(out.crl ?? join(certsDir, 'crl.json')));
  if (!out.nodeId) out.nodeId = `${hostname()}-${randomBytes(3).toString('hex')}`;
  const cfg = out as unknown as Config;
  if (cfg.port < 0) throw new ConfigError(`${src('port')}: the TLS listener cannot be turned off`);
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(cfg.logLevel)) {
    throw new ConfigError(`${src('logLevel')}: unknown level "${cfg.logLevel}"`);
  }
  if (cfg.maxFrameBytes < 1024) throw new ConfigError(`${src('maxFrameBytes')}: must be at least 1024`);
  // Node's TLS server treats 0 as "not set" and waits its own 120 s: there is no "off" to offer
  if (cfg.handshakeTimeout < 1) throw new ConfigError(`${src('handshakeTimeout')}: must be at least 1 ms (Node has no "off": 0 would mean its own 120 s)`);
  if (cfg.redisCa) cfg.redisCa = resolve(cfg.redisCa);
  if (cfg.redisCert) cfg.redisCert = resolve(cfg.redisCert);
  if (cfg.redisKey) cfg.redisKey = resolve(cfg.redisKey);
  checkRedis(cfg.redis, { ca: cfg.redisCa, cert: cfg.redisCert, key: cfg.redisKey }, src('redis'));
  if (cfg.busHeartbeat < 100) throw new ConfigError(`${src('busHeartbeat')}: must be at least 100 ms`);
  if (Buffer.byteLength(cfg.nodeId) > 255) throw new ConfigError(`${src('nodeId')}: at most 255 bytes`);
  try {
    parseAllowList(cfg.metricsAllow); // refuse a bad allowlist before anything listens
    parseAllowList(cfg.proxyProtocol, '--proxy-protocol (COTSTREAM_PROXY_PROTOCOL)');
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return Object.freeze(cfg);
}

/** COTSTREAM_ variables read elsewhere than the OPTIONS table (the CLI, the certs commands). */
const OTHER_ENV = ['COTSTREAM_CONFIG', 'COTSTREAM_CLI_MAIN', 'COTSTREAM_CA_KEY', 'COTSTREAM_P12_PASSWORD'];

/**
 * COTSTREAM_* variables nobody reads, each with the known name it most likely meant. A config
 * file's unknown key is refused; the environment is shared with other software, so these are
 * only warned about — but a misspelt COTSTREAM_REDIS (for COTSTREAM_REDIS_URL) would otherwise
 * start a lone node on the in-process bus without a word.
 */
export function unknownEnv(env: NodeJS.ProcessEnv): string[] {
  const known = new Set<string>([...OPTIONS.flatMap((o) => o.env), ...OTHER_ENV]);
  const out: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('COTSTREAM_') || known.has(name)) continue;
    const guess = [...known].find((k) => k.startsWith(name) || name.startsWith(k) || editDistance(k, name) <= 2);
    out.push(guess ? `${name} (did you mean ${guess}?)` : name);
  }
  return out;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** What may be logged of a config: no tokens, no Redis password (in the user info or the query). */
export function redactedConfig(cfg: Config): Record<string, unknown> {
  // the key's path is no secret and says which key was loaded: logged as keyFile, because the
  // logger's redact list censors any field named `key` (a second line of defence for key material)
  const { metricsToken, key, ...rest } = cfg;
  return { ...rest, keyFile: key, metricsToken: metricsToken ? '[set]' : '', redis: redactUrl(cfg.redis) };
}
