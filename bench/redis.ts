#!/usr/bin/env -S node --import tsx
// `make bench-redis`: what the Redis hop costs. In one run, the same load (same clients, senders,
// rate) against (1) one cotstream node on the in-process bus and (2) two cotstream nodes on one
// Redis, the clients spread over both nodes (every event crosses Redis to half its recipients).
// The figure is deliveries per server CPU-second: the deliveries the clients counted divided by
// the CPU time (utime + stime from /proc/<pid>/stat) of the cotstream processes — redis-server's
// CPU is reported beside it, not added. Target: two nodes on Redis >= 80% of the single node.
// Each measurement is the second of two equal steps: the first warms the processes up.
// The generator (bench/load.ts's runLoad) runs in this process; its CPU is not counted either.
// Where taskset exists and there are two CPUs or more, every cotstream node (the single one, and
// both of the pair) runs on CPU 0 and this process and redis-server on CPU 1: the variants get the
// same CPU for server work and the generator never competes with them (unpinned, on a 2-core
// machine two nodes + generator + redis-server overcommit the CPUs and the figures are noise).
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { runLoad, type LoadResult } from './load.ts';
import { benchCreds } from './lib/certs.ts';
import { cpuSeconds, pinProcess, wakeups, writeSyscalls } from './lib/proc.ts';
import { wakeupCostUs } from './lib/wakeup.ts';
import { fmt, mdTable } from './lib/table.ts';
import { spawnServer, type SpawnedServer } from '../test/helpers/server.ts';
import { TestRedis } from '../test/helpers/redis.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

const o = new Command('bench-redis')
  .description('deliveries per server CPU-second: two cotstream nodes on Redis vs one node in memory, same load, same run')
  .option('--certs-dir <dir>', 'dev PKI (created when missing)', path.join(ROOT, 'certs'))
  .option('--loads <list>', 'loads to measure, comma-separated CLIENTSxSENDERSxRATE (connections spread over the nodes, how many send, events/s each)', '40x4x500,100x10x300,200x20x150,200x200x2')
  .option('--duration <s>', 'seconds of sending per measurement', '8')
  .option('--rounds <n>', 'memory/redis pairs (alternated, to even out machine noise)', '2')
  .option('--no-control', 'skip the control run (two in-memory nodes with no bus between them)')
  .option('--no-pin', 'do not pin the nodes to CPU 0 and the generator and redis-server to CPU 1')
  .parse(process.argv)
  .opts();

interface Load { clients: number; senders: number; rate: number }
const loads: Load[] = String(o.loads).split(',').map((l) => {
  const [clients, senders, rate] = l.split('x').map(Number);
  if (![clients, senders, rate].every((v) => Number.isFinite(v) && v > 0) || senders > clients) throw new Error(`--loads: "${l}" is not CLIENTSxSENDERSxRATE`);
  return { clients, senders, rate };
});
const duration = Number(o.duration);
const rounds = Number(o.rounds);
const control: boolean = o.control;
// pinned when asked, possible, and taskset accepts this process (checked once, here)
const pinned = o.pin !== false && os.cpus().length >= 2 && pinProcess(process.pid, 1);
const GEN_CPU = 1;
const SERVER_CPU = 0;
/** start cotstream nodes, pinned to the server CPU */
async function nodesUp(flags: string[][]): Promise<SpawnedServer[]> {
  const nodes = await Promise.all(flags.map((f) => spawnServer(f)));
  if (pinned) for (const n of nodes) pinProcess(n.proc.pid!, SERVER_CPU);
  return nodes;
}
const certsDir = path.resolve(String(o.certsDir));
const t0 = Date.now();
const say = (s: string) => process.stderr.write(`[bench-redis ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${s}\n`);

const SERVER_FLAGS = ['--certs-dir', certsDir, '--rate-events', '0', '--rate-bytes', '0', '--max-clients-per-ip', '0', '--max-clients', '0'];

type Variant = 'memory, 1 node' | 'redis, 2 nodes' | 'control: memory, 2 nodes, no bus';

interface Measure {
  variant: Variant;
  deliveries: number;
  serverCpu: number;
  redisCpu: number;
  perCpuSec: number;
  /** deliveries per write syscall of the nodes: how well writes were coalesced */
  perWrite: number;
  /** event-loop wakeups of the nodes (main threads) per 1,000 deliveries */
  wakeupsPerK: number;
  deliveriesPerSec: number;
  loss: number;
  dupes: number;
  echoes: number;
  p99Ms: number;
}

async function measure(variant: Variant, nodes: SpawnedServer[], redisPid: number, { clients, senders, rate }: Load): Promise<Measure> {
  const pids = nodes.map((n) => n.proc.pid!);
  const cpu = () => pids.reduce((a, p) => a + cpuSeconds(p), 0);
  const writes = () => pids.reduce((a, p) => a + writeSyscalls(p), 0);
  const wakes = () => pids.reduce((a, p) => a + wakeups(p), 0);
  // step 1 warms up (JIT, buffers: each node process pays it once, so a cold measurement would
  // charge the two-node run twice); CPU is counted from its end to the end of step 2
  let c0 = NaN;
  let r0 = NaN;
  let w0 = NaN;
  let k0 = NaN;
  const r: LoadResult = await runLoad({
    host: '127.0.0.1', port: nodes[0].port, ports: nodes.map((n) => n.port), certsDir, certs: 8, clients, senders,
    // no settle wait: the nodes are fresh but serverPid is 0 here, and step 1 (not counted) spans their start-up
    rates: [rate, rate], duration, warmup: 0, settle: 0, grace: 1, size: 600, concurrency: 16, serverPid: 0, metricsUrl: '', hold: 0.5, startAt: 0,
    genId: Math.floor(Math.random() * 2 ** 30) + 1, stopWhenSaturated: false,
  }, (s) => {
    if (s.startsWith('step 1/2 done')) { c0 = cpu(); w0 = writes(); k0 = wakes(); r0 = redisPid ? cpuSeconds(redisPid) : 0; }
    say(`  ${variant}: ${s}`);
  });
  const serverCpu = cpu() - c0;
  const serverWrites = writes() - w0;
  const serverWakeups = wakes() - k0;
  const redisCpu = redisPid ? cpuSeconds(redisPid) - r0 : 0;
  const s = r.steps[1];
  return {
    variant, deliveries: s.deliveries, serverCpu, redisCpu, perCpuSec: s.deliveries / serverCpu, perWrite: s.deliveries / serverWrites, wakeupsPerK: serverWakeups / s.deliveries * 1000, deliveriesPerSec: s.deliveriesPerSec,
    loss: s.loss, dupes: s.dupes, echoes: s.echoes, p99Ms: s.p99Ms,
  };
}

async function measureLoad(load: Load): Promise<{ text: string; ratio: number; results: Measure[] }> {
  const results: Measure[] = [];
  const tag = `${load.clients} clients, ${load.senders} x ${load.rate} ev/s`;
  for (let k = 0; k < rounds; k++) {
    {
      say(`${tag}, round ${k + 1}/${rounds}: one node, in-process bus`);
      const [n] = await nodesUp([SERVER_FLAGS]);
      try { results.push(await measure('memory, 1 node', [n], 0, load)); } finally { await n.stop(); }
    }
    {
      say(`${tag}, round ${k + 1}/${rounds}: two nodes on Redis`);
      const redis = await TestRedis.start();
      if (pinned) pinProcess(redis.proc!.pid!, GEN_CPU);
      const nodes = await nodesUp(['bench-a', 'bench-b'].map((id) => [...SERVER_FLAGS, '--redis', redis.url, '--node-id', id]));
      try {
        results.push(await measure('redis, 2 nodes', nodes, redis.proc!.pid!, load));
      } finally {
        await Promise.all(nodes.map((n) => n.stop()));
        await redis.stop();
      }
    }
    if (control) {
      // the same two processes and client split without any bus: what splitting alone costs here
      say(`${tag}, round ${k + 1}/${rounds}: control, two unconnected in-memory nodes`);
      const nodes = await nodesUp([SERVER_FLAGS, SERVER_FLAGS]);
      try { results.push(await measure('control: memory, 2 nodes, no bus', nodes, 0, load)); } finally { await Promise.all(nodes.map((n) => n.stop())); }
    }
  }
  const avg = (v: Variant) => {
    const m = results.filter((r) => r.variant === v);
    return m.reduce((a, r) => a + r.deliveries, 0) / m.reduce((a, r) => a + r.serverCpu, 0);
  };
  const mem = avg('memory, 1 node');
  const red = avg('redis, 2 nodes');
  const ctl = control ? avg('control: memory, 2 nodes, no bus') : NaN;
  const rows = [['variant', 'deliveries', 'server CPU s', 'deliveries / server CPU-s', 'vs memory', 'deliveries / write syscall', 'node wakeups / 1,000 deliveries', 'redis-server CPU s', 'deliv/s', 'loss', 'dupes', 'echoes', 'p99 ms']];
  for (const r of results) {
    rows.push([r.variant, fmt(r.deliveries), fmt(r.serverCpu, 2), fmt(r.perCpuSec), `${fmt((r.perCpuSec / mem) * 100)}%`, fmt(r.perWrite, 2), fmt(r.wakeupsPerK, 1), r.redisCpu ? fmt(r.redisCpu, 2) : '-',
      fmt(r.deliveriesPerSec), fmt(r.loss), fmt(r.dupes), fmt(r.echoes), fmt(r.p99Ms, 2)]);
  }
  const text =
    `## ${load.clients} clients, ${load.senders} senders at ${load.rate} events/s (${fmt(load.senders * load.rate * (load.clients - 1))} deliveries/s offered)\n\n` +
    mdTable(rows) +
    `\n**Deliveries per server CPU-second: two nodes on Redis = ${fmt((red / mem) * 100)}% of one node in memory** ` +
    `(${fmt(red)} vs ${fmt(mem)}; target >= 80%).\n` +
    (control ? `\nControl: the same two processes and client split with no bus (each client then gets only its own node's events, ` +
      `so its loss column is expected) manage ${fmt(ctl)} deliveries per CPU-second = ${fmt((ctl / mem) * 100)}% of the single node: ` +
      `that part of the gap is the split into two processes, not Redis. Two nodes on Redis = ${fmt((red / ctl) * 100)}% of the control.\n` : '') + '\n';
  return { text, ratio: red / mem, results };
}

async function main(): Promise<void> {
  await benchCreds(certsDir, 8, say);
  const loadBefore = os.loadavg()[0];
  const parts: string[] = [];
  const summary: string[] = [];
  let bad = 0;
  for (const load of loads) {
    const r = await measureLoad(load);
    parts.push(r.text);
    summary.push(`${load.clients} clients, ${load.senders} x ${load.rate} ev/s: ${fmt(r.ratio * 100)}%`);
    bad += r.results.filter((m) => !m.variant.startsWith('control') && (m.loss > 0 || m.dupes > 0 || m.echoes > 0)).length;
  }
  // after the loads, so it warms nothing up for them; pinned only: it needs two known CPUs
  let wake = '';
  if (pinned) {
    const far = await wakeupCostUs(SERVER_CPU);
    const near = await wakeupCostUs(GEN_CPU);
    wake = `An idle Node process woken by one byte on a pipe costs ${fmt(far, 1)} µs of its CPU per wakeup when woken from the other CPU, ${fmt(near, 1)} µs from its own (bench/lib/wakeup.ts). `;
  }
  const cpus = os.cpus();
  process.stdout.write(
    `# Redis hop: two nodes on Redis vs one node in memory\n\n` +
    `600-byte events, ${duration} s per measurement, ${rounds} rounds per load; clients spread round-robin over the nodes. ` +
    `${cpus.length} × ${cpus[0]?.model ?? '?'}, Node ${process.version}, load average ${loadBefore.toFixed(2)} → ${os.loadavg()[0].toFixed(2)}. ` +
    (pinned ? `cotstream nodes pinned to CPU ${SERVER_CPU}, generator and redis-server to CPU ${GEN_CPU}. ${wake}\n\n` : '**Not pinned** (--no-pin, no taskset, or one CPU): nodes, generator and redis-server share the CPUs.\n\n') +
    parts.join('') +
    `Two nodes on Redis vs one in memory, deliveries per server CPU-second: ${summary.join('; ')} (target >= 80%).\n`,
  );
  if (bad) say(`warning: loss, duplicates or echoes in ${bad} measurement(s): see the tables`);
}

main().then(() => process.exit(0), (err: Error) => { process.stderr.write(`bench-redis: ${err.stack ?? err.message}\n`); process.exit(1); });
