// Composition root: builds the parts from one Config, wires them, owns start and stop.
import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Config } from './config.ts';
import { redactedConfig, redisInClear } from './config.ts';
import { Metrics } from './ops/metrics.ts';
import { LogLimiter, type Logger } from './ops/log.ts';
import { HTTP_LIMITS, startHttp } from './ops/http.ts';
import { MemoryBus } from './bus/memory.ts';
import { RedisBus } from './bus/redis.ts';
import type { Bus } from './bus/types.ts';
import { Router } from './router.ts';
import { FlushScheduler, Session, type SessionLimits } from './session.ts';
import { ConnectionLimiter, createTlsListener, createTcpListener, listen, setListenerCredentials } from './net/tls.ts';
import { parseAllowList } from './net/addresses.ts';
import { fdBudget, openFileLimit, type FdBudget } from './net/fdlimit.ts';
import { assertKeyPrivate as assertPrivate, assertNotOthersWritable, caPem } from './pki/files.ts';
import { pkiPaths, signedCopyFor } from './pki/paths.ts';
import { watchCertificateExpiry } from './pki/expiry.ts';
import { identityFromSocket, remoteOf, type ClientIdentity } from './auth/identity.ts';
import { RevocationList } from './auth/revocation.ts';
import { ClusterCrl } from './auth/cluster-crl.ts';
import { canonicalSerial } from './auth/serial.ts';

export class StartupError extends Error {}

/** host:port as a client would dial it: an IPv6 address in brackets ([::]:8089, not :::8089) */
function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new StartupError(`cannot read the ${what} at ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}. Create a dev PKI with 'cotstream certs init' (or 'make run').`);
  }
}

/**
 * The server's certificate, key and CA, checked so that each problem names its file and the fix:
 * a key others can read (that is how keys leak), trust files others can change, a key that is
 * passphrase-protected or not the certificate's.
 */
function loadCredentials(cfg: Config): { ca: Buffer; cert: Buffer; key: Buffer; x: X509Certificate } {
  const ca = caPem(readPem(cfg.ca, 'CA certificate'));
  const cert = readPem(cfg.cert, 'server certificate');
  const key = readPem(cfg.key, 'server private key');
  try {
    assertPrivate(cfg.key);
    assertNotOthersWritable(cfg.key, 'server private key');
    assertNotOthersWritable(cfg.ca, 'CA certificate (whom the server trusts)');
    assertNotOthersWritable(cfg.crl, 'revocation list');
  } catch (err) {
    throw new StartupError((err as Error).message);
  }
  let pk: KeyObject;
  try {
    pk = createPrivateKey(key);
  } catch (err) {
    throw new StartupError(/ENCRYPTED/.test(key.toString('latin1'))
      ? `the server private key ${cfg.key} is passphrase-protected: cotstream needs it unencrypted, kept safe by its mode 0600 (openssl pkey -in ${cfg.key} -out server-plain.key; FreeTAKServer keeps such a copy, FTS_UNENCRYPTED_KEYDIR)`
      : `cannot read the server private key ${cfg.key}: ${(err as Error).message}`);
  }
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch (err) {
    throw new StartupError(`cannot read the server certificate ${cfg.cert}: ${(err as Error).message}`);
  }
  if (!x.checkPrivateKey(pk)) throw new StartupError(`${cfg.key} is not the key of ${cfg.cert}`);
  // a CA file with no certificate in it refuses every device with a verification error that
  // points at the devices, not at the file
  try {
    new X509Certificate(ca);
  } catch {
    throw new StartupError(`no certificate in the CA file ${cfg.ca}${/PRIVATE KEY-----/.test(ca.toString('latin1')) ? ' (it holds a private key: --ca takes the CA certificate, ca.pem)' : ''}: it says whom the server trusts`);
  }
  return { ca, cert, key, x };
}

export class CotServer {
  readonly metrics: Metrics;
  readonly router: Router;
  readonly bus: Bus;
  private readonly flusher: FlushScheduler;
  private readonly limiter: ConnectionLimiter;
  private readonly limits: SessionLimits;
  private readonly refusedLog: LogLimiter;
  /** connection limits cut to the file descriptors the process may open */
  private readonly fds: FdBudget;
  private readonly fdLimit: number | null;
  private tls: NetServer | null = null;
  private tcp: NetServer | null = null;
  private http: HttpServer | null = null;
  private listening = false;
  private stopping: Promise<void> | null = null;
  tlsPort = 0;
  tcpPort = 0;
  metricsPort = 0;
  /** consulted for every new TLS client before it may exchange CoT (revocation) */
  isRevoked: (id: ClientIdentity) => string | undefined = () => undefined;
  /** the revocation list in force (watched; SIGHUP calls reloadRevocations) */
  revocations: RevocationList | null = null;
  private stopExpiry: (() => void) | null = null;

  constructor(readonly cfg: Config, readonly log: Logger, metrics?: Metrics) {
    this.metrics = metrics ?? new Metrics();
    this.refusedLog = new LogLimiter(log);
    this.flusher = new FlushScheduler(this.metrics, cfg.writeCoalesce);
    this.bus = cfg.redis
      ? new RedisBus({ url: cfg.redis, nodeId: cfg.nodeId, tls: { ca: cfg.redisCa, cert: cfg.redisCert, key: cfg.redisKey }, heartbeatMs: cfg.busHeartbeat, metrics: this.metrics, log })
      : new MemoryBus(cfg.nodeId, this.metrics);
    this.router = new Router(this.bus, this.flusher, this.metrics, log, { announce: cfg.announce });
    this.fdLimit = openFileLimit();
    this.fds = fdBudget(this.fdLimit, cfg.maxClients, HTTP_LIMITS.maxConnections);
    // --max-clients-per-ip also bounds the new connections per second from one address
    this.limiter = new ConnectionLimiter(this.fds.clients, cfg.maxClientsPerIp, cfg.maxClientsPerIp);
    this.limits = {
      maxFrameBytes: cfg.maxFrameBytes,
      maxSendBuffer: cfg.maxSendBuffer,
      slowConsumerTimeout: cfg.slowConsumerTimeout,
      idleTimeout: cfg.idleTimeout,
      rateEvents: cfg.rateEvents,
      rateBurst: cfg.rateBurst,
      rateBytes: cfg.rateBytes,
    };
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    let creds: ReturnType<typeof loadCredentials>;
    try {
      creds = loadCredentials(cfg);
    } catch (err) {
      throw new StartupError(`refusing to start: ${(err as Error).message}`);
    }
    const { ca, cert, key } = creds;
    this.log.info({ audit: 'start', config: redactedConfig(cfg), bus: this.bus.kind }, `cotstream starting (bus: ${this.bus.kind})`);
    const clear = redisInClear(cfg.redis);
    if (clear) this.log.warn({ audit: 'plaintext', redis: clear }, `Redis at ${clear} over plaintext redis://: every event, and the Redis password, cross the network in clear; between machines use rediss:// (README "Scale-out with Redis")`);
    if (this.fds.clients !== cfg.maxClients) {
      this.log.warn({ audit: 'limits', maxClients: this.fds.clients, configured: cfg.maxClients, openFiles: this.fdLimit },
        `--max-clients ${cfg.maxClients || '0 (unlimited)'} is more than this process can open files for (RLIMIT_NOFILE ${this.fdLimit}): at most ${this.fds.clients} client connections; raise the limit (ulimit -n, systemd LimitNOFILE=) to allow more`);
    }
    this.startRevocation();
    this.stopExpiry = watchCertificateExpiry({ ca: cfg.ca, server: cfg.cert }, this.metrics.certExpiry, this.log, () => this.warnCrlExpired());
    // up before the bus connects (a Redis that does not answer holds start() for seconds): a
    // liveness probe gets 200, /readyz 503 until the listener is up
    if (cfg.metricsPort >= 0) {
      this.http = await startHttp(
        { host: cfg.metricsHost, port: cfg.metricsPort, token: cfg.metricsToken, allow: cfg.metricsAllow, ready: () => this.ready(), maxConnections: this.fds.http },
        this.metrics, this.log,
      );
      const addr = this.http.address();
      this.metricsPort = typeof addr === 'object' && addr ? addr.port : 0;
    }
    await this.bus.start(this.router.deliver, this.router);

    this.tls = createTlsListener(
      { host: cfg.host, port: cfg.port, key, cert, ca, handshakeTimeout: cfg.handshakeTimeout, maxClients: this.fds.clients, maxClientsPerIp: cfg.maxClientsPerIp, proxyFrom: parseAllowList(cfg.proxyProtocol, '--proxy-protocol'), refusedLog: this.refusedLog },
      this.limiter, this.metrics, this.log, { onSecure: (sock) => this.onSecure(sock) },
    );
    this.tlsPort = await listen(this.tls, cfg.port, cfg.host);
    if (cfg.tcpPort >= 0) {
      this.tcp = createTcpListener(this.limiter, this.metrics, this.log, (sock) => this.onPlain(sock), this.refusedLog);
      this.tcpPort = await listen(this.tcp, cfg.tcpPort, cfg.host);
      this.log.warn({ audit: 'plaintext', port: this.tcpPort }, `PLAINTEXT CoT listener on ${hostPort(cfg.host, this.tcpPort)}: anyone who reaches it can read and inject events without a certificate`);
    }
    this.listening = true;
    this.log.info({ audit: 'listening', tls: hostPort(cfg.host, this.tlsPort), metrics: this.http ? hostPort(cfg.metricsHost, this.metricsPort) : 'off' }, `cotstream listening on ${hostPort(cfg.host, this.tlsPort)} (mutual TLS)`);
  }

  ready(): boolean {
    return this.listening && this.bus.isUp();
  }

  private onSecure(sock: TLSSocket): void {
    const id = identityFromSocket(sock);
    const revoked = this.isRevoked(id);
    if (revoked !== undefined) {
      this.metrics.handshake.revoked.inc();
      // limited like the other refusals: a revoked device retrying in a loop must not flood the log
      if (this.refusedLog.allow()) this.log.warn({ audit: 'refused', reason: 'revoked', cn: id.cn, serial: id.serial, remote: id.remote, revocationReason: revoked }, 'revoked certificate refused');
      sock.destroy();
      return;
    }
    this.metrics.handshake.ok.inc();
    this.accept(sock, id);
  }

  private onPlain(sock: Socket): void {
    this.accept(sock, { cn: '', serial: '', fingerprint: '', remote: remoteOf(sock), plaintext: true });
  }

  private accept(sock: Socket | TLSSocket, id: ClientIdentity): void {
    if (this.stopping) {
      // the handshake finished while we were stopping: say who was turned away
      this.log.info({ audit: 'refused', reason: 'shutdown', cn: id.cn, serial: id.serial, remote: id.remote }, 'server stopping: connection closed');
      sock.destroy();
      return;
    }
    const s = new Session(sock, id, this.router, this.limits, this.metrics, this.flusher, this.log);
    s.log.info({ audit: 'accepted', fingerprint: id.fingerprint, plaintext: id.plaintext || undefined, protocol: (sock as TLSSocket).getProtocol?.() ?? 'tcp' }, 'client connected');
    this.router.add(s);
  }

  /**
   * Load the revocation list before accepting anyone (a corrupt list refuses the start: there is
   * no last good list yet), then watch it: a change closes the live sessions it revokes.
   */
  private startRevocation(): void {
    const list = new RevocationList({ path: this.cfg.crl, log: this.log, signedCopy: signedCopyFor(this.cfg.crl, this.cfg.certsDir) });
    try {
      list.load();
    } catch (err) {
      throw new StartupError(`refusing to start: ${(err as Error).message}`);
    }
    const gauges = (): void => {
      this.metrics.revokedSerials.set(list.size);
      this.metrics.crlNextUpdate.set(list.nextUpdate ? Math.floor(list.nextUpdate.getTime() / 1000) : 0);
      this.metrics.crlOk.set(list.fileOk ? 1 : 0);
    };
    gauges();
    list.on('reload', gauges);
    list.on('change', () => this.dropRevoked());
    // logged by the list; the last good list stays in force, and the gauge says so (an alert)
    list.on('error', gauges);
    list.watch();
    // the list a Redis cluster shares (`revoke --redis`), kept beside the PKI for restarts without
    // Redis; enforced on the in-process bus too: a node taken out of its cluster keeps refusing
    // what the cluster revoked (delete the file to forget it)
    const shared = new ClusterCrl({ ca: this.cfg.ca, file: pkiPaths(this.cfg.certsDir).crlCluster, list, log: this.log, metrics: this.metrics });
    shared.load();
    if (this.bus instanceof RedisBus) this.bus.shareRevocations(shared);
    this.revocations = list;
    this.isRevoked = (id) => (id.serial ? list.lookup(id.serial)?.reason : undefined);
  }

  /**
   * Re-read the server certificate, its key and the CA (SIGHUP): new connections get them, live
   * sessions are untouched. A pair that does not load (unreadable, key not the certificate's, a
   * key others can read) is refused with one error line and the running one stays.
   */
  reloadCertificates(): void {
    const cfg = this.cfg;
    if (!this.tls) return;
    try {
      const { ca, cert, key, x } = loadCredentials(cfg);
      setListenerCredentials(this.tls, { key, cert, ca });
      this.log.info({ audit: 'reload', cert: cfg.cert, serial: canonicalSerial(x.serialNumber), not_after: new Date(x.validTo).toISOString() }, 'server certificate (re)loaded for new connections');
    } catch (err) {
      this.log.error({ audit: 'reload', cert: cfg.cert, err: (err as Error).message }, 'server certificate not reloaded: the one in use stays');
      return;
    }
    this.stopExpiry?.();
    this.stopExpiry = watchCertificateExpiry({ ca: cfg.ca, server: cfg.cert }, this.metrics.certExpiry, this.log, () => this.warnCrlExpired());
  }

  /** Re-read the revocation list now (SIGHUP). */
  reloadRevocations(): void {
    this.log.info({ audit: 'reload', crl: this.cfg.crl }, 'reloading the revocation list');
    this.revocations?.reload();
  }

  private warnCrlExpired(): void {
    const list = this.revocations;
    if (list?.expired) {
      this.log.warn({ crl: this.cfg.crl, next_update: list.nextUpdate!.toISOString() }, 'revocation list next_update has passed: still enforced; `cotstream crl refresh` renews it');
    }
  }

  /** Close every live session whose certificate the list now revokes, one audit line each. */
  private dropRevoked(): number {
    return this.closeWhere((id, s) => {
      const reason = this.isRevoked(id);
      if (reason === undefined) return false;
      s.log.warn({ audit: 'revoked', revocationReason: reason }, 'certificate revoked: closing its session');
      return true;
    }, 'revoked');
  }

  /** Close the sessions of every client that matches (revocation takes effect at once). */
  closeWhere(pred: (id: ClientIdentity, s: Session) => boolean, reason: 'revoked'): number {
    let n = 0;
    for (const s of [...this.router.sessions]) if (pred(s.identity, s)) { s.close(reason); n++; }
    return n;
  }

  /** Stop accepting, close every session, close the bus. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.listening = false;
      this.revocations?.close();
      this.stopExpiry?.();
      const closing: Promise<void>[] = [];
      for (const srv of [this.tls, this.tcp]) if (srv) closing.push(new Promise((r) => srv.close(() => r())));
      this.flusher.flush();
      for (const s of [...this.router.sessions]) s.close('shutdown');
      this.router.close();
      await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 2000).unref())]);
      await this.bus.close();
      if (this.http) await new Promise<void>((r) => { this.http!.close(() => r()); this.http!.closeAllConnections(); });
      this.log.info({ audit: 'stopped' }, 'cotstream stopped');
    })();
    return this.stopping;
  }
}
