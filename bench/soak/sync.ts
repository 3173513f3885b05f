#!/usr/bin/env -S node --import tsx
// State sync at cluster scale: does the Redis bus's sync (a node asks, every node answers with the
// latest SA of each of its clients) hold with thousands of clients per node, or can it storm?
// Real redis-server with its default limits (client-output-buffer-limit pubsub 32mb 8mb 60), real
// `cotstream start` processes, and CLIENTS real TLS connections per node, each the owner of one SA
// of about --sa-bytes. The clients never read (a broadcast to thousands of readers would cost the
// run N² TLS deliveries): the nodes drop what does not fit their 64-KiB send buffer, and the sync —
// which only fills SA caches when nothing changed — is what is measured. A monitor subscribed to
// the channel decodes every batch header: publishes, bytes, sync requests and answer marks per node.
// Redis's CLIENT LIST / INFO and each node's RSS are sampled every 200 ms.
//
// Steps: a node joins; one node's subscriber is killed by Redis (CLIENT KILL: reconnect + gap);
// Redis restarted (every node reconnects and asks at once); then --watch seconds of background SA
// updates with no trigger (does anything keep asking?).
//
//   npx tsx bench/soak/sync.ts --nodes 3 --clients 1000 --sa-bytes 2048
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Command } from 'commander';
import { Redis } from 'ioredis';
import { benchCreds } from '../lib/certs.ts';
import { BatchType, decodeBatch, decodeHeader, markOf } from '../../src/bus/codec.ts';
import { EnvelopeKind } from '../../src/bus/types.ts';
import { TestRedis } from '../../test/helpers/redis.ts';
import { spawnServer, metricValue, type SpawnedServer } from '../../test/helpers/server.ts';
import { sa } from '../../test/helpers/client.ts';

const opts = new Command()
  .option('--nodes <n>', 'nodes with clients', '3')
  .option('--clients <n>', 'TLS clients (one SA each) per node', '1000')
  .option('--sa-bytes <n>', 'size of each SA', '2048')
  .option('--rate <n>', 'background SA updates per second (whole cluster) during the steps', '20')
  .option('--watch <s>', 'seconds watched after the last step', '15')
  .option('--heartbeat <ms>', '--bus-heartbeat of the nodes', '5000')
  .option('--only <list>', 'steps: join,kill,restart (comma-separated)', 'join,kill,restart')
  .parse().opts() as Record<string, string>;

const NODES = Number(opts.nodes);
const CLIENTS = Number(opts.clients);
const SA_BYTES = Number(opts.saBytes);
const STEPS = new Set(opts.only.split(','));
const log = (s: string): void => console.log(`${new Date().toISOString().slice(11, 23)} ${s}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cotstream-sync-'));
const { ca, clients: certs } = await benchCreds(dir, 8, undefined, { create: true }); // a throwaway PKI of its own

const redis = await TestRedis.start();
const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 200 });
admin.on('error', () => { /* redis restarts during the run */ });
await admin.connect();
log(`redis ${redis.url}; client-output-buffer-limit: ${(await admin.config('GET', 'client-output-buffer-limit') as string[])[1]}`);

// ---- monitor: every batch on the channel ---------------------------------------------------
interface Ev { t: number; node: string; type: 'sync' | 'start' | 'end' | 'replay' | 'events' | 'beat' | 'leaving'; bytes: number }
const evs: Ev[] = [];
const mon = new Redis(redis.url, { lazyConnect: true, connectionName: 'sync-monitor', retryStrategy: () => 200 });
mon.on('error', () => { /* idem */ });
mon.on('ready', () => { void mon.subscribe('cotstream:v1'); });
mon.on('messageBuffer', (_c: Buffer, msg: Buffer) => {
  const h = decodeHeader(msg);
  let type: Ev['type'] = 'events';
  if (h.type === BatchType.sync) type = 'sync';
  else if (h.type === BatchType.heartbeat) type = 'beat';
  else if (h.count === 0) type = markOf(msg, h) ?? 'end';
  else if (decodeBatch(msg).envelopes[0]?.kind === EnvelopeKind.replay) type = 'replay';
  evs.push({ t: Date.now(), node: h.node, type, bytes: msg.length });
});
await mon.connect();

// ---- samplers: redis and nodes --------------------------------------------------------------
interface Sample { t: number; usedMem: number; maxOmem: number; maxOmemName: string; subs: number }
const samples: Sample[] = [];
const nodes: Array<{ name: string; s: SpawnedServer; rss: number[] }> = [];
let prevDisc = -1;
async function sample(): Promise<void> {
  try {
    const list = await admin.client('LIST') as string;
    let maxOmem = 0; let maxOmemName = ''; let subs = 0;
    for (const line of list.split('\n')) {
      const name = /name=(\S*)/.exec(line)?.[1] ?? '';
      const omem = Number(/omem=(\d+)/.exec(line)?.[1] ?? 0);
      if (/ sub=[1-9]/.test(' ' + line)) subs++;
      if (omem > maxOmem) { maxOmem = omem; maxOmemName = name; }
    }
    const info = await admin.info('memory');
    samples.push({ t: Date.now(), usedMem: Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0), maxOmem, maxOmemName, subs });
  } catch { /* redis restarting */ }
  for (const n of nodes) {
    try {
      const st = fs.readFileSync(`/proc/${n.s.proc.pid}/status`, 'utf8');
      n.rss.push(Number(/VmRSS:\s+(\d+)/.exec(st)![1]) * 1024);
    } catch { /* gone */ }
  }
}
const sampler = setInterval(() => { void sample(); }, 200);

// Redis 7.0 has no counter for these in INFO: its log names each one (and survives in TestRedis.log
// until a restart, so the count is kept across restarts here)
let discBefore = 0;
async function disconnections(): Promise<number> {
  return discBefore + (redis.log.match(/overcoming of output buffer limits/g)?.length ?? 0);
}

// ---- nodes and clients ----------------------------------------------------------------------
const HB = opts.heartbeat;
async function startNode(name: string): Promise<void> {
  const s = await spawnServer(['--certs-dir', dir, '--redis', redis.url, '--node-id', name, '--bus-heartbeat', HB,
    '--max-clients', '0', '--max-clients-per-ip', '0', '--rate-events', '0', '--rate-bytes', '0',
    '--max-send-buffer', '65536', '--slow-consumer-timeout', '0', '--idle-timeout', '0', '--log-level', 'info'], {}, { openFiles: 20000 });
  nodes.push({ name, s, rss: [] });
}

const pad = 'x'.repeat(Math.max(0, SA_BYTES - sa('u', 'c', { staleSec: 3600 }).length - 20));
const saOf = (uid: string): string => sa(uid, uid, { staleSec: 3600, lat: Math.random() * 10 }).replace('</detail>', `<remarks>${pad}</remarks></detail>`);
const sockets: Array<{ sock: tls.TLSSocket; uid: string }> = [];
async function connectClients(port: number, prefix: string, n: number): Promise<void> {
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const uid = `${prefix}-${i}`;
      const c = certs[i % certs.length];
      await new Promise<void>((resolve, reject) => {
        const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, cert: c.cert, key: c.key });
        sock.once('secureConnect', () => { sock.write(saOf(uid)); sock.pause(); sockets.push({ sock, uid }); resolve(); });
        sock.once('error', reject);
      });
    }
  };
  await Promise.all(Array.from({ length: 32 }, one));
}

async function nodeMetrics(): Promise<Array<{ gaps: number; up: number; sas: number }>> {
  return Promise.all(nodes.map(async (n) => {
    const t = await (await fetch(`http://127.0.0.1:${n.s.metricsPort}/metrics`)).text();
    return { gaps: metricValue(t, 'cot_bus_gaps_total'), up: metricValue(t, 'cot_bus_up'), sas: metricValue(t, 'cot_sa_cache_entries') };
  }));
}

// background SA updates from random clients (a live cluster keeps publishing)
let bg: NodeJS.Timeout | null = null;
function background(rate: number): void {
  if (rate <= 0) return;
  bg = setInterval(() => {
    for (let k = 0; k < Math.max(1, Math.round(rate / 10)); k++) {
      const c = sockets[Math.floor(Math.random() * sockets.length)];
      if (c && !c.sock.destroyed) c.sock.write(saOf(c.uid));
    }
  }, 100);
}

// ---- one step: trigger, then watch the channel until the answers are over -------------------
const rows: string[] = [];
async function step(name: string, trigger: () => Promise<void>, quietMs = Number(HB) * 1.5 + 500, maxMs = 40_000): Promise<void> {
  const d0 = await disconnections();
  const m0 = await nodeMetrics();
  const i0 = evs.length; const s0 = samples.length; const r0 = nodes.map((n) => n.rss.length);
  const t0 = Date.now();
  log(`step ${name}: trigger`);
  await trigger();
  // over when no sync request, answer batch or mark has been seen for quietMs
  for (;;) {
    await sleep(250);
    const last = [...evs.slice(i0)].reverse().find((e) => e.type === 'sync' || e.type === 'start' || e.type === 'end' || e.type === 'replay');
    const lastT = last?.t ?? t0;
    if (Date.now() - lastT > quietMs && Date.now() - t0 > quietMs) break;
    if (Date.now() - t0 > maxMs) { log(`step ${name}: still syncing after ${maxMs} ms`); break; }
  }
  const e = evs.slice(i0);
  const reqs = e.filter((x) => x.type === 'sync');
  const replay = e.filter((x) => x.type === 'replay');
  const ends = e.filter((x) => x.type === 'end');
  const starts = e.filter((x) => x.type === 'start');
  const first = reqs[0]?.t ?? t0;
  const lastEnd = ends.length ? ends[ends.length - 1].t : NaN;
  const sm = samples.slice(s0);
  const maxOmem = sm.reduce((a, b) => (b.maxOmem > a.maxOmem ? b : a), { maxOmem: 0, maxOmemName: '' } as Sample);
  const maxUsed = Math.max(0, ...sm.map((x) => x.usedMem));
  const m1 = await nodeMetrics();
  const d1 = await disconnections();
  const MB = (b: number): string => (b / 1048576).toFixed(1);
  const rssGrow = nodes.map((n, k) => {
    const base = n.rss[Math.max(0, (r0[k] ?? 0) - 1)] ?? n.rss[0] ?? 0;
    const peak = Math.max(0, ...n.rss.slice(r0[k] ?? 0));
    return `${n.name} ${MB(base)}→${MB(peak)}`;
  }).join(', ');
  const reqBy = [...new Set(reqs.map((r) => r.node))].map((nd) => `${nd}×${reqs.filter((r) => r.node === nd).length}`).join(' ');
  const row = [
    `step ${name}:`,
    `  sync requests ${reqs.length} (${reqBy}) at +${reqs.map((r) => r.t - first).join(', +')} ms`,
    `  answers: ${starts.length} start / ${ends.length} end marks, ${replay.length} answer PUBLISHes, ${MB(replay.reduce((a, b) => a + b.bytes, 0))} MB published`,
    `  converged (last end mark) ${Number.isNaN(lastEnd) ? '-' : lastEnd - first} ms after the first request`,
    `  redis: peak used_memory ${MB(maxUsed)} MB, peak subscriber omem ${MB(maxOmem.maxOmem)} MB (${maxOmem.maxOmemName}), output-buffer disconnections +${d1 - d0}`,
    `  nodes: gaps +${m1.map((m, k) => m.gaps - (m0[k]?.gaps ?? 0)).join('/')}, bus up ${m1.map((m) => m.up).join('/')}, SA cache ${m1.map((m) => m.sas).join('/')}`,
    `  node RSS (MB, before→peak): ${rssGrow}`,
  ].join('\n');
  log(row);
  rows.push(row);
  prevDisc = d1;
}

try {
  for (let k = 0; k < NODES; k++) await startNode(`n${k}`);
  log(`${NODES} nodes up; connecting ${CLIENTS} clients each (SA ${saOf('n0-0').length} bytes)`);
  const tc = Date.now();
  for (let k = 0; k < NODES; k++) await connectClients(nodes[k].s.port, `n${k}`, CLIENTS);
  log(`${sockets.length} clients connected in ${Date.now() - tc} ms`);
  // every cache full: each node holds every SA
  for (let w = 0; w < 120; w++) {
    const m = await nodeMetrics();
    if (m.every((x) => x.sas >= NODES * CLIENTS)) break;
    await sleep(500);
  }
  log(`caches: ${(await nodeMetrics()).map((m) => m.sas).join('/')}`);
  background(Number(opts.rate));
  await sleep(2000);
  if (STEPS.has('join')) await step('a node joins', async () => { await startNode(`n${nodes.length}`); });
  if (STEPS.has('kill')) await step('n0\'s subscriber disconnected by Redis (CLIENT KILL)', async () => {
    const line = (await admin.client('LIST') as string).split('\n').find((l) => l.includes('name=cotstream:n0:sub'));
    await admin.client('KILL', 'ID', /id=(\d+)/.exec(line ?? '')?.[1] ?? '0');
  });
  if (STEPS.has('restart')) await step('Redis restarted (every node reconnects and asks)', async () => { discBefore = await disconnections(); await redis.restart(); await admin.ping().catch(() => 0); });
  await step(`${opts.watch} s with no trigger`, async () => { await sleep(Number(opts.watch) * 1000); });
  console.log('\n' + rows.join('\n'));
  const disc = nodes.flatMap((n) => n.s.lines.filter((l) => l.audit === 'bus' && l.state === 'down').map((l) => `${n.name} ${String(l.time ?? '')}: ${String(l.err)}`));
  console.log(`nodes off the bus (one line each):\n  ${disc.join('\n  ')}\noutput-buffer disconnections (redis log): ${prevDisc}`);
} finally {
  clearInterval(sampler);
  if (bg) clearInterval(bg);
  for (const c of sockets) c.sock.destroy();
  await Promise.all(nodes.map((n) => n.s.stop('SIGKILL')));
  mon.disconnect();
  admin.disconnect();
  await redis.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
