#!/usr/bin/env -S node --import tsx
// Acceptance run of a cluster as an operator runs it: three cotstream processes on a real
// redis-server, a real HAProxy 2.6 in front with the README's recipe (checks every 500 ms instead of
// 2 s), ATAK-like devices over real TLS (bench/soak/device.ts: SA at once and every 1-2 s, a third
// stationary after their first SA, a fifth on TAK protobuf, reconnecting 0.1-3 s after losing the
// stream, directed chat by callsign). Steps: a rolling restart (SIGTERM, same --node-id, each in
// turn), a node killed and restarted, Redis restarted, then Redis away 6 s with a node restarted
// meanwhile. After each step, from every device's point of view: every node's replay to a newcomer
// holds exactly the connected devices; the last word each connection heard about every other device
// is its SA (not a t-x-d-d); no event twice on one connection; nobody gets its own events live;
// directed chat reaches its addressee once (except while Redis is away) and nobody else; every node
// ready. Then the log: no node reported silent but the killed one, a handful of warnings in all.
//
//   npx tsx bench/soak/rollover.ts [--devices 30] [--heartbeat 1000] [--verbose]
//     [--inter MS (HAProxy's check interval; 0: its default 2 s)] [--without-redispatch]
// Exit 0 when every check passed; the figures on the last line. About 70 s.
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { makePki } from '../../test/helpers/pki.ts';
import { spawnServer, type SpawnedServer } from '../../test/helpers/server.ts';
import { TestRedis, freePort } from '../../test/helpers/redis.ts';
import { CotClient, sleep, until } from '../../test/helpers/client.ts';
import { HaProxy, readmeRecipe } from '../../test/helpers/haproxy.ts';
import { Device, heard, replayEnd } from './device.ts';

const opts = new Command()
  .option('--devices <n>', 'ATAK-like devices behind the balancer', '30')
  .option('--heartbeat <ms>', 'the nodes\' --bus-heartbeat', '1000')
  .option('--verbose', 'print every bus and warning line of every node')
  .option('--inter <ms>', 'HAProxy check interval (0: the recipe as written, HAProxy\'s 2 s)', '500')
  .option('--without-redispatch', 'the recipe without its `option redispatch` (to see what it is for)')
  .option('--haproxy-extra <lines>', 'lines added to the recipe\'s defaults section (e.g. "option redispatch")', '')
  .parse().opts() as Record<string, string | boolean>;
const N_DEVICES = Number(opts.devices);
const N_PROTO = Math.floor(N_DEVICES / 5);
const HEARTBEAT = String(opts.heartbeat);

const readyz = async (port: number): Promise<number> => {
  try { return (await fetch(`http://127.0.0.1:${port}/readyz`)).status; } catch { return 0; }
};

/** One node: fixed ports (the balancer names them), restarted under the same id. */
class Node {
  run: SpawnedServer | null = null;
  /** every run's log lines */
  readonly runs: Array<Array<Record<string, unknown>>> = [];
  constructor(readonly id: string, readonly port: number, readonly metricsPort: number, private readonly args: string[]) {}
  async start(): Promise<void> {
    this.run = await spawnServer([...this.args, '--node-id', this.id, '--port', String(this.port), '--metrics-port', String(this.metricsPort)]);
    this.runs.push(this.run.lines);
  }
  async stop(signal: NodeJS.Signals): Promise<void> {
    await this.run?.stop(signal);
    this.run = null;
  }
}

const nodes: Node[] = [];
const devices: Device[] = [];
let chatTimer: NodeJS.Timeout | null = null;
const figures: Record<string, number> = { checks: 0, checksPassed: 0, chatsChecked: 0, connections: 0, events: 0 };
/** while Redis is away, chat between nodes is lost (as the README says): not counted */
const outages: Array<[number, number]> = [];
const pki = await makePki([]);
const redis = await TestRedis.start();
let lb: HaProxy | null = null;
const probeId = { ...(await pki.client('probe')), ca: pki.paths.ca };

async function check(step: string): Promise<void> {
  await until(() => devices.every((d) => d.connected && Date.now() - d.current!.openedAt > 1500), 30_000, `every device connected (${step}): ${devices.filter((d) => !d.connected).map((d) => d.uid).join(' ')}`);
  await until(async () => (await Promise.all(nodes.map((n) => readyz(n.metricsPort)))).every((s) => s === 200), 10_000, `every node ready (${step})`);
  // two SA periods and a bus crossing: every device has reported to every other since
  await sleep(3000);
  figures.checks++;
  const uids = new Set(devices.map((d) => d.uid));
  const byCallsign = new Map(devices.map((d) => [d.callsign, d]));
  const out: string[] = [];
  // every node replays exactly the connected devices to a newcomer
  for (const n of nodes) {
    const probe = await CotClient.connect(n.port, probeId, '127.0.0.1', '127.0.0.3');
    try {
      await probe.waitFor((f) => replayEnd(f) >= 0, 5000, 'the replay');
      const replayed = new Set(probe.frames.slice(0, replayEnd(probe.frames)).map((f) => heard(f)).filter((h) => h.kind === 'sa').map((h) => h.about));
      const ghosts = [...replayed].filter((u) => !uids.has(u));
      const missing = [...uids].filter((u) => !replayed.has(u));
      if (ghosts.length || missing.length) out.push(`${step}: ${n.id} replays ghosts [${ghosts.join(' ')}] and misses [${missing.join(' ')}]`);
    } finally {
      probe.close();
    }
  }
  for (const d of devices) {
    const c = d.current!;
    // the last word this connection heard about every other device is its SA, not a delete
    const last = new Map<string, string>();
    for (const f of c.frames) {
      const h = heard(f);
      if (h.kind === 'sa') last.set(h.about, 'sa');
      else if (h.kind === 'gone') last.set(h.about, 'gone');
    }
    for (const u of uids) {
      if (u === d.uid) continue;
      const w = last.get(u);
      if (w !== 'sa') out.push(`${step}: ${d.uid} (conn ${c.id}) last heard of ${u}: ${w ?? 'nothing'}`);
    }
  }
  for (const d of devices) {
    for (const c of d.conns) {
      const seen = new Map<string, number>();
      const end = replayEnd(c.frames);
      c.frames.forEach((f, i) => {
        const h = heard(f);
        if (!h.marker) return;
        seen.set(h.marker, (seen.get(h.marker) ?? 0) + 1);
        if (h.about === d.uid && i > end && end >= 0) out.push(`${step}: ${d.uid} (conn ${c.id}) got its own ${h.marker} live`);
      });
      for (const [m, k] of seen) if (k > 1) out.push(`${step}: ${d.uid} (conn ${c.id}) got ${m} ${k} times`);
    }
  }
  // directed chat: the addressee's connection open around it gets it once; nobody else ever
  const now = Date.now();
  for (const s of devices) {
    for (const [marker, { to, at }] of s.sentChats) {
      if (at > now - 2000) continue;
      const addressee = byCallsign.get(to)!;
      let elsewhere = 0;
      for (const d of devices) {
        if (d === addressee) continue;
        for (const c of d.conns) elsewhere += c.frames.filter((f) => f.includes(`>${marker}<`)).length;
      }
      if (elsewhere > 0) out.push(`${step}: ${marker} to ${to} reached ${elsewhere} others`);
      const got = addressee.conns.reduce((k, c) => k + c.frames.filter((f) => f.includes(`>${marker}<`)).length, 0);
      const senderConn = s.conns.find((c) => c.openedAt <= at && (c.closedAt === 0 || c.closedAt > at + 2000));
      const toConn = addressee.conns.find((c) => c.openedAt < at - 1000 && (c.closedAt === 0 || c.closedAt > at + 2000));
      const inOutage = outages.some(([a, b]) => at >= a - 500 && at <= b + 1000);
      if (senderConn && toConn && !inOutage) {
        figures.chatsChecked++;
        if (got !== 1) out.push(`${step}: ${marker} to ${to} (both connected) reached it ${got} times`);
      } else if (got > 1) out.push(`${step}: ${marker} to ${to} reached it ${got} times`);
      s.sentChats.delete(marker);
    }
  }
  assert.deepEqual(out, [], out.slice(0, 30).join('\n'));
  figures.checksPassed = (figures.checksPassed ?? 0) + 1;
}

let failed = false;
try {
  const common = ['--certs-dir', pki.dir, '--redis', redis.url, '--bus-heartbeat', HEARTBEAT, '--proxy-protocol', '127.0.0.1'];
  for (const id of ['node-a', 'node-b', 'node-c']) nodes.push(new Node(id, await freePort(), await freePort(), common));
  await Promise.all(nodes.map((n) => n.start()));
  const front = await freePort();
  const recipe = readmeRecipe();
  const servers = (check: string) => nodes.map((n, i) => `    server ${'abc'[i]} 127.0.0.1:${n.port} ${check} port ${n.metricsPort} send-proxy-v2`).join('\n');
  const cfg = recipe
    .replace('bind :8089', `bind 127.0.0.1:${front}`)
    .replace(/^ *option redispatch.*\n/m, opts.withoutRedispatch ? '' : '$&')
    // checks every 500 ms instead of HAProxy's 2 s: the same behaviour, in a test's time
    .replace('defaults\n', `defaults\n${Number(opts.inter) > 0 ? `    default-server inter ${Number(opts.inter)}ms\n` : ''}${String(opts.haproxyExtra).split(';').filter(Boolean).map((l) => `    ${l.trim()}\n`).join('')}`)
    .replace(/(    server a 10\.0\.0\.11:8089 check port 9089 send-proxy-v2\n    server b 10\.0\.0\.12:8089 check port 9089 send-proxy-v2)/g, () => servers('check'));
  assert.ok(!/10\.0\.0\./.test(cfg), `the recipe's servers moved:\n${cfg}`);
  lb = await HaProxy.run(cfg, front);
  for (let i = 0; i < N_DEVICES; i++) {
    const name = `dev${i}`;
    const creds = { ...(await pki.client(name)), ca: pki.paths.ca };
    devices.push(new Device(`ANDROID-${name}`, name.toUpperCase(), creds, () => front, {
      proto: i < N_PROTO,
      // a third stationary as ATAK: a report every 180 s, valid 375 s (so one SA per connection here)
      saEveryMs: i % 3 === 2 ? 180_000 : 1000,
      staleSec: i % 3 === 2 ? 375 : 60,
      // a few come back at once, most after a few seconds (ATAK)
      reconnectMs: i % 4 === 0 ? [100, 400] : [1000, 3000],
    }));
  }
  for (const d of devices) { d.start(); await sleep(20); }
  chatTimer = setInterval(() => {
    const from = devices[Math.floor(Math.random() * devices.length)];
    const to = devices[Math.floor(Math.random() * devices.length)];
    if (from !== to) from.chat(to.callsign);
  }, 200);
  await check('initial');
  for (const n of nodes) {
    await n.stop('SIGTERM');
    await sleep(500);
    await n.start();
    await check(`after ${n.id} restarted (SIGTERM)`);
  }
  await nodes[1].stop('SIGKILL');
  await sleep(4 * Number(HEARTBEAT));
  await nodes[1].start();
  await check(`after ${nodes[1].id} killed and restarted`);
  const down0 = Date.now();
  await redis.restart();
  await until(async () => (await Promise.all(nodes.map((n) => readyz(n.metricsPort)))).every((s) => s === 200), 10_000, 'every node ready');
  outages.push([down0, Date.now()]);
  await check('after Redis restarted');
  // Redis away past the 5 s a node keeps publishes, and a node restarted meanwhile: its clients'
  // disconnect notices, and the SAs they send from the nodes they reconnect to, never cross
  const down = Date.now();
  await redis.kill();
  await nodes[2].stop('SIGTERM');
  await nodes[2].start();
  await sleep(6000);
  await redis.restart();
  await until(async () => (await Promise.all(nodes.map((n) => readyz(n.metricsPort)))).every((s) => s === 200), 10_000, 'every node ready');
  outages.push([down, Date.now()]);
  await check('after a Redis outage with a node restarted in it');
  // log lines: one per event of note; a node stopped cleanly is not reported silent
  const warn: string[] = [];
  for (const n of nodes) {
    for (const lines of n.runs) {
      for (const l of lines) if (Number(l.level) >= 40) warn.push(`${n.id}: ${String(l.msg)} ${String(l.peer ?? '')}`);
    }
  }
  if (opts.verbose) {
    for (const n of nodes) for (const lines of n.runs) for (const l of lines) if (l.audit === 'bus' || Number(l.level) >= 40) console.log(n.id, JSON.stringify(l));
  }
  const silent = warn.filter((w) => w.includes('node silent'));
  assert.ok(silent.every((w) => w.endsWith(nodes[1].id)), `a node stopped cleanly reported silent:\n${silent.join('\n')}`);
  assert.ok(warn.length < 20, `warnings:\n${warn.join('\n')}`);
} catch (err) {
  failed = true;
  console.error((err as Error).message);
} finally {
  if (chatTimer) clearInterval(chatTimer);
  for (const d of devices) d.stop();
  await lb?.stop();
  await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
  await redis.stop();
  pki.cleanup();
  figures.connections = devices.reduce((k, d) => k + d.conns.length, 0);
  figures.events = devices.reduce((k, d) => k + d.conns.reduce((m, c) => m + c.frames.length, 0), 0);
  figures.connectFailures = devices.reduce((k, d) => k + d.connectFailures, 0);
  // from losing the stream to the next one established (the device's own 0.1-3 s wait included)
  const gaps = devices.flatMap((d) => d.conns.slice(1).map((c, i) => c.openedAt - d.conns[i].closedAt)).sort((a, b) => a - b);
  figures.reconnectP50Ms = gaps[Math.floor(gaps.length / 2)] ?? 0;
  figures.reconnectMaxMs = gaps[gaps.length - 1] ?? 0;
}
console.log(`${failed ? 'FAILED' : 'passed'}: ${N_DEVICES} devices (${N_PROTO} protobuf), ${JSON.stringify(figures)}`);
process.exit(failed ? 1 : 0);
