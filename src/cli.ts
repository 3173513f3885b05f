#!/usr/bin/env node
// The `cotstream` command: run the server, manage the PKI and the revocation list.
import { Command, CommanderError, Option } from 'commander';
import { SERVER_VERSION } from '../protocol/control.ts';
import { pathToFileURL } from 'node:url';
import { OPTIONS, buildConfig, exposedSecrets, unknownEnv, ConfigError } from './config.ts';
import { createLogger, settleLog } from './ops/log.ts';
import { Metrics } from './ops/metrics.ts';
import { CotServer, StartupError } from './server.ts';
import { registerCertsCommands } from './pki/index.ts';
import { registerRevocationCommands } from './auth/revocation-commands.ts';

export function buildProgram(): Command {
  const program = new Command('cotstream')
    .description('TAK streaming CoT server: mutual TLS on 8089, routing, Redis scale-out, Prometheus metrics')
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true })
    // the version TAK clients are told (t-x-takp-v serverVersion), so an operator can match the two
    .version(SERVER_VERSION.replace(/^cotstream-/, ''), '-V, --version', 'print the version');

  const start = program
    .command('start')
    .description('run the server in the foreground (logs JSON to stdout; SIGTERM/SIGINT stop it, SIGHUP reloads the revocation list and the server certificate)')
    .option('--config <file>', 'JSON file with option values (keys as in camelCase: {"port": 8089}; an unknown key is refused); flags and env win over it [default: none] (env COTSTREAM_CONFIG)');
  for (const spec of OPTIONS) {
    const envs = spec.env.join(', ');
    // an operator reads every default: "none" rather than an empty string; a --no-X flag is on
    // by default and its variable turns it off; a help text that already explains it says enough
    let def = '';
    if (spec.kind === 'bool') def = ` [default: ${spec.key}]`; // '--no-announce … [default: on]' read as 'no-announce is on'
    else if (spec.def !== undefined && !spec.help.includes('(default')) def = ` [default: ${spec.def === '' ? 'none' : spec.def}]`;
    start.addOption(new Option(spec.flag, `${spec.help}${def} (env ${spec.kind === 'bool' ? `${envs}=false` : envs})`));
  }
  start.addHelpText('after', `\n${EXIT_CODES}`);
  program.addHelpText('after', `\n${EXIT_CODES}`);
  registerCertsCommands(program);
  registerRevocationCommands(program);
  start.action(async (flags: Record<string, unknown>) => {
    await runServer(flags, (flags.config as string | undefined) ?? (process.env.COTSTREAM_CONFIG || undefined));
  });
  return program;
}

const EXIT_CODES =
  'Exit status: 0 done, or the server stopped by SIGTERM/SIGINT; 1 the command failed or the server\n' +
  'could not start (a port in use, a missing or unreadable certificate or key, a corrupt revocation\n' +
  'list); 2 a usage or configuration error (unknown option, bad value, bad config file).';

/** commander's codes for a command line it cannot make sense of: exit 2, like a bad option value */
const USAGE_ERRORS = new Set([
  'commander.unknownOption', 'commander.unknownCommand', 'commander.missingArgument', 'commander.optionMissingArgument',
  'commander.missingMandatoryOptionValue', 'commander.invalidArgument', 'commander.excessArguments', 'commander.conflictingOption',
]);

/** Run the command line; usage errors exit 2, a failed command 1 (commander itself says 1 for both). */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  const own = (c: Command): void => {
    // "unknown option '--pasword=…'": the value of a mistyped flag may be the secret it was to carry
    // (to the last quote: a password may hold one), and so may what follows a short one ('-psecret')
    c.exitOverride().configureOutput({ outputError: (s, write) => write(s.replace(/(unknown option '--[^'=]*)=.*'/, "$1=…'").replace(/(unknown option '-[^-'])[^']+'/, "$1…'")) });
    for (const sub of c.commands) own(sub);
  };
  own(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(USAGE_ERRORS.has(err.code) ? 2 : err.exitCode);
    console.error(`cotstream: ${(err as Error).message}`);
    process.exit(1);
  }
}

/** how long an exit waits for stdout to take the last log lines (a hung log reader would never) */
const LOG_GRACE_MS = 3000;

async function runServer(flags: Record<string, unknown>, configFile?: string): Promise<void> {
  let cfg;
  try {
    cfg = buildConfig(flags, process.env, configFile);
  } catch (err) {
    if (err instanceof ConfigError) { console.error(`cotstream: ${err.message}`); process.exit(2); }
    throw err;
  }
  const metrics = new Metrics();
  const log = createLogger(cfg.logLevel, undefined, { maxBuffer: cfg.logBuffer, onDrop: () => metrics.logDropped.inc() });
  const exposed = configFile ? exposedSecrets(configFile) : [];
  if (exposed.length) log.warn({ audit: 'config', file: configFile, secrets: exposed }, `config file ${configFile} holds ${exposed.join(' and ')} and other users can read it: chmod 600 ${configFile} (or pass them as environment variables)`);
  const stray = unknownEnv(process.env);
  if (stray.length) log.warn({ audit: 'config', unknownEnv: stray }, `environment variables ignored, no option reads them: ${stray.join(', ')}`);
  const server = new CotServer(cfg, log, metrics);
  try {
    await server.start();
  } catch (err) {
    const msg = err instanceof StartupError ? err.message : `startup failed: ${(err as Error).message}`;
    log.fatal({ audit: 'startup_failed', err: msg }, msg);
    console.error(`cotstream: ${msg}`);
    await server.stop().catch(() => undefined);
    await settleLog(log, LOG_GRACE_MS);
    process.exit(1);
  }
  const shutdown = (signal: string): void => {
    log.info({ audit: 'signal', signal }, `received ${signal}, stopping`);
    server.stop().then(() => settleLog(log, LOG_GRACE_MS)).then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => { server.reloadRevocations(); server.reloadCertificates(); });
  process.on('uncaughtException', (err) => {
    // a bug must not take every client down silently: log it loudly, keep serving
    log.error({ audit: 'bug', err: err.message, stack: err.stack }, 'uncaught exception');
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href || process.env.COTSTREAM_CLI_MAIN === '1') {
  void main(process.argv);
}
