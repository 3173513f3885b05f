// One cotstream node for the soak run (bench/soak/run.ts): the real CotServer in its own process
// (real TLS listener, real certificates), started from flags passed as JSON in SOAK_FLAGS, with a
// probe over IPC that reports what a soak must watch: memory after a GC, open fds, active handles,
// the size of every per-client map (router, limiter, bus), and log lines by message.
import fs from 'node:fs';
import { Writable } from 'node:stream';
import v8 from 'node:v8';
import { buildConfig } from '../../src/config.ts';
import { createLogger } from '../../src/ops/log.ts';
import { CotServer } from '../../src/server.ts';

const flags = JSON.parse(process.env.SOAK_FLAGS ?? '{}') as Record<string, unknown>;
const logFile = process.env.SOAK_LOG ? fs.openSync(process.env.SOAK_LOG, 'a') : -1;
const byMsg = new Map<string, number>();
let lines = 0;
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    const s = chunk.toString();
    if (logFile >= 0) fs.writeSync(logFile, s);
    for (const line of s.split('\n')) {
      if (!line) continue;
      lines++;
      const m = /"msg":"([^"]*)"/.exec(line);
      const k = m ? m[1] : '?';
      byMsg.set(k, (byMsg.get(k) ?? 0) + 1);
    }
    cb();
  },
});

const cfg = buildConfig({ host: '127.0.0.1', port: '0', metricsHost: '127.0.0.1', metricsPort: '0', logLevel: 'info', ...flags }, {});
const server = new CotServer(cfg, createLogger(cfg.logLevel, sink));
await server.start();
process.send!({ kind: 'listening', port: server.tlsPort, metricsPort: server.metricsPort, pid: process.pid });

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function sizes(): Record<string, number> {
  const s = server as unknown as Any;
  const r = s.router as Any;
  const out: Record<string, number> = {
    sessions: r.sessions.size, byUid: r.byUid.size, byCallsign: r.byCallsign.size, sa: r.sa.size,
    limiterOpen: s.limiter.open, limiterPerIp: s.limiter.perIp.size, limiterRates: s.limiter.rates.size,
    flushDirty: s.flusher.dirty.length, flushLater: s.flusher.later.length,
  };
  const b = s.bus as Any;
  if (b.kind === 'redis') {
    Object.assign(out, {
      busPeers: b.peers.size, busLost: b.lost.size, busHeld: b.held.length, busHeldBytes: b.heldBytes,
      busInflightBytes: b.inflightBytes, busPending: b.pending.length, busUpWaiters: b.upWaiters.length,
    });
  }
  return out;
}

process.on('message', (m: Any) => {
  if (m.kind === 'probe') {
    if (m.gc && global.gc) { global.gc(); global.gc(); }
    const mem = process.memoryUsage();
    const handles: Record<string, number> = {};
    for (const t of process.getActiveResourcesInfo()) handles[t] = (handles[t] ?? 0) + 1;
    process.send!({
      kind: 'probe', id: m.id, rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, arrayBuffers: mem.arrayBuffers,
      spaces: Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name.replace('_space', ''), x.space_used_size])),
      fds: fs.readdirSync('/proc/self/fd').length, handles, sizes: sizes(), lines, byMsg: Object.fromEntries(byMsg),
    });
  } else if (m.kind === 'snapshot') {
    if (global.gc) global.gc();
    process.send!({ kind: 'probe', id: m.id, file: v8.writeHeapSnapshot(m.file) });
  } else if (m.kind === 'stop') {
    void server.stop().then(() => process.exit(0));
  }
});
