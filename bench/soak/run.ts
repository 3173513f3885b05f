#!/usr/bin/env -S node --import tsx
// Soak / churn run: real cotstream node process(es) (bench/soak/node.ts), real TLS, real
// certificates, thousands of clients connecting and leaving in every way a field deployment sees
// (clean, RST, mid-handshake, mid-frame, mid-replay, uid conflicts, half-negotiated protobuf,
// never reading, many addresses), optionally two nodes on a real redis-server that is restarted
// and frozen meanwhile. Every --every seconds one line per node: RSS, heap after GC, fds, handles,
// every per-client map, log lines/s. After the churn it waits for the timeouts and compares with
// the baseline taken before it.
//
//   npx tsx bench/soak/run.ts --seconds 180 --concurrency 40
//   npx tsx bench/soak/run.ts --seconds 180 --redis --chaos
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { benchCreds } from '../lib/certs.ts';
import { TestRedis } from '../../test/helpers/redis.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const opts = new Command()
  .option('--seconds <n>', 'churn duration', '120')
  .option('--concurrency <n>', 'parallel churning clients', '40')
  .option('--holders <n>', 'long-lived clients with an SA (make the replay big, receive traffic)', '50')
  .option('--every <s>', 'probe interval', '10')
  .option('--redis', 'two nodes on a real redis-server')
  .option('--chaos', 'with --redis: restart and SIGSTOP redis during the churn')
  .option('--settle <s>', 'wait after the churn before the final probe', '15')
  .option('--only <list>', 'comma-separated scenario names')
  .option('--snapshots', 'heap snapshots at the baseline and when settled (in the temp dir)')
  .option('--flags <json>', 'extra server flags (JSON)', '{}')
  .parse().opts() as Record<string, string | boolean>;

const SECONDS = Number(opts.seconds);
const CONC = Number(opts.concurrency);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cotstream-soak-'));
const NCERTS = 6;
const { ca, clients: certs } = await benchCreds(dir, NCERTS, undefined, { create: true }); // a throwaway PKI of its own

// ---- nodes ----------------------------------------------------------------------------------
interface Node { proc: ChildProcess; port: number; metricsPort: number; name: string; pending: Map<number, (m: any) => void> } // eslint-disable-line @typescript-eslint/no-explicit-any
let redis: TestRedis | null = null;
if (opts.redis) redis = await TestRedis.start();
const baseFlags = { certsDir: dir, idleTimeout: '8000', handshakeTimeout: '2000', maxClientsPerIp: '0', busHeartbeat: '1000', ...JSON.parse(String(opts.flags)) };

async function startNode(name: string): Promise<Node> {
  const flags = { ...baseFlags, ...(redis ? { redis: redis.url, nodeId: name } : {}) };
  const proc = fork(path.join(here, 'node.ts'), [], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    env: { ...process.env, SOAK_FLAGS: JSON.stringify(flags), SOAK_LOG: path.join(dir, `${name}.log`) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, (m: any) => void>(); // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve) => {
    proc.on('message', (m: any) => { // eslint-disable-line @typescript-eslint/no-explicit-any
      if (m.kind === 'listening') resolve({ proc, port: m.port, metricsPort: m.metricsPort, name, pending });
      else if (m.kind === 'probe') { pending.get(m.id)?.(m); pending.delete(m.id); }
    });
  });
}
let probeId = 0;
function probe(n: Node, gc = true): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const id = ++probeId;
  return new Promise((r) => { n.pending.set(id, r); n.proc.send({ kind: 'probe', id, gc }); });
}
async function metrics(n: Node): Promise<string> {
  return (await fetch(`http://127.0.0.1:${n.metricsPort}/metrics`)).text();
}

const nodes: Node[] = [await startNode('soak-a')];
if (redis) nodes.push(await startNode('soak-b'));

// ---- clients --------------------------------------------------------------------------------
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const rnd = (n: number): number => Math.floor(Math.random() * n);
let serial = 0;

function sa(uid: string, callsign: string, staleSec = 60, pad = 0): string {
  const t = new Date().toISOString();
  const stale = new Date(Date.now() + staleSec * 1000).toISOString();
  return `<event version="2.0" uid="${uid}" type="a-f-G-U-C" time="${t}" start="${t}" stale="${stale}" how="m-g">` +
    `<point lat="38.5" lon="-77.1" hae="10.0" ce="9.9" le="9999999.0"/>` +
    `<detail><contact endpoint="*:-1:stcp" callsign="${callsign}"/><__group name="Cyan" role="Team Member"/><remarks>${'x'.repeat(pad)}</remarks></detail></event>`;
}
function chat(uid: string, to: string): string {
  const t = new Date().toISOString();
  return `<event version="2.0" uid="GeoChat.${uid}.${serial}" type="b-t-f" time="${t}" start="${t}" stale="${t}" how="h-g-i-g-o"><point lat="0" lon="0" hae="0" ce="0" le="0"/>` +
    `<detail><remarks>hi</remarks><marti><dest callsign="${to}"/></marti></detail></event>`;
}
const TAKQ = (uid: string): string => `<event version="2.0" uid="${uid}" type="t-x-takp-q" time="2020-01-01T00:00:00Z" start="2020-01-01T00:00:00Z" stale="2030-01-01T00:00:00Z" how="m-g"><point lat="0" lon="0" hae="0" ce="0" le="0"/><detail><TakControl><TakRequest version="1"/></TakControl></detail></event>`;

function addr(): string { return `127.${1 + rnd(3)}.${rnd(256)}.${1 + rnd(250)}`; }

interface Conn { raw: net.Socket; sock: tls.TLSSocket }
function connect(node: Node, o: { cert?: number | null; local?: string; read?: boolean } = {}): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: '127.0.0.1', port: node.port, localAddress: o.local });
    raw.on('error', () => {});
    const c = o.cert === null ? {} : certs[o.cert ?? rnd(NCERTS)];
    const sock = tls.connect({ socket: raw, servername: 'localhost', ca, ...c, maxVersion: Math.random() < 0.5 ? 'TLSv1.2' : 'TLSv1.3' });
    sock.on('error', () => {});
    if (o.read !== false) sock.on('data', () => {});
    else sock.pause();
    const t = setTimeout(() => { raw.destroy(); reject(new Error('connect timeout')); }, 10000);
    sock.once('secureConnect', () => { clearTimeout(t); resolve({ raw, sock }); });
    sock.once('close', () => { clearTimeout(t); reject(new Error('closed')); });
  });
}
function rst(c: Conn): void { c.raw.resetAndDestroy(); }
function closeWait(c: Conn, ms = 3000): Promise<void> {
  return new Promise((r) => { if (c.sock.destroyed) { r(); return; } const t = setTimeout(r, ms); c.sock.once('close', () => { clearTimeout(t); r(); }); });
}
const pick = (): Node => nodes[rnd(nodes.length)];

const holders: Conn[] = [];
const scenarios: Record<string, () => Promise<void>> = {
  async clean() {
    const c = await connect(pick(), { local: addr() });
    const uid = `clean-${++serial}`;
    c.sock.write(sa(uid, `cs-${serial}`));
    await sleep(50 + rnd(200));
    c.sock.end();
    await closeWait(c);
  },
  async rstAfterSa() {
    const c = await connect(pick(), { local: addr() });
    c.sock.write(sa(`rst-${++serial}`, `cs-${serial}`, 3600 * 24 * 365));
    await sleep(rnd(100));
    rst(c);
  },
  async destroyed() {
    const c = await connect(pick());
    c.sock.write(sa(`dst-${++serial}`, `cs-${serial}`));
    c.sock.destroy();
  },
  async midHandshake() {
    const raw = net.connect({ host: '127.0.0.1', port: pick().port, localAddress: addr() });
    raw.on('error', () => {});
    await new Promise((r) => raw.once('connect', r));
    // a partial ClientHello record header, then nothing, then RST or FIN or wait for the timeout
    raw.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    const w = rnd(3);
    if (w === 0) raw.resetAndDestroy();
    else if (w === 1) { await sleep(rnd(300)); raw.end(); }
    else await new Promise((r) => raw.once('close', r));
  },
  async noCert() {
    const raw = net.connect({ host: '127.0.0.1', port: pick().port });
    raw.on('error', () => {});
    const s = tls.connect({ socket: raw, servername: 'localhost', ca });
    s.on('error', () => {});
    await new Promise((r) => s.once('close', r));
  },
  async midFrame() {
    const c = await connect(pick());
    const f = sa(`mf-${++serial}`, `cs-${serial}`);
    c.sock.write(f.slice(0, rnd(f.length)));
    await sleep(rnd(200));
    if (Math.random() < 0.5) rst(c); else c.sock.end();
  },
  async midReplay() {
    // a newcomer that leaves (RST) while the SA replay of the holders is still being sent
    const c = await connect(pick(), { read: false });
    await sleep(rnd(20));
    rst(c);
  },
  async conflict() {
    const uid = `conf-${++serial}`;
    const a = await connect(pick(), { cert: 0 });
    a.sock.write(sa(uid, 'owner'));
    await sleep(50);
    const b = await connect(pick(), { cert: 1 });
    b.sock.write(sa(uid, 'thief'));
    await sleep(50);
    b.sock.write(sa(uid, 'thief2'));
    await sleep(50);
    if (Math.random() < 0.5) { rst(a); rst(b); } else { a.sock.end(); b.sock.end(); await Promise.all([closeWait(a), closeWait(b)]); }
  },
  async takeover() {
    const uid = `to-${++serial}`;
    const a = await connect(pick(), { cert: 2 });
    a.sock.write(sa(uid, `cs-${serial}`));
    await sleep(50);
    const b = await connect(pick(), { cert: 2 });
    b.sock.write(sa(uid, `cs-${serial}-b`));
    await sleep(100);
    rst(b);
    rst(a);
  },
  async protoHalf() {
    const c = await connect(pick());
    const uid = `pb-${++serial}`;
    c.sock.write(sa(uid, `cs-${serial}`));
    c.sock.write(TAKQ(uid));
    await sleep(rnd(100));
    c.sock.write(Buffer.from([0xbf, 0xff, 0xff, 0x03, 0x0a, 0x01]));
    await sleep(rnd(100));
    rst(c);
  },
  async neverReads() {
    const c = await connect(pick(), { read: false });
    c.sock.write(sa(`nr-${++serial}`, `cs-${serial}`));
    await sleep(1000 + rnd(2000));
    if (Math.random() < 0.5) rst(c); else c.sock.destroy();
  },
  async renames() {
    const c = await connect(pick(), { local: addr() });
    const uid = `rn-${++serial}`;
    for (let i = 0; i < 15; i++) c.sock.write(sa(uid, `cs-${serial}-${i}`));
    c.sock.write(chat(uid, `cs-${serial}-3`));
    c.sock.write('<event junk');
    c.sock.write('</event>garbage<event version="2.0"/>');
    await sleep(100);
    c.sock.end();
    await closeWait(c);
  },
  async idleOut() {
    // connects, says nothing, waits to be closed by the idle timeout
    const c = await connect(pick());
    await closeWait(c, 30000);
  },
};
const names = opts.only ? String(opts.only).split(',') : Object.keys(scenarios);

// ---- holders: long-lived clients with an SA (a big replay) that keep sending -------------------
async function startHolders(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const c = await connect(nodes[i % nodes.length], { cert: 3 + (i % 3) });
    c.sock.write(sa(`holder-${i}`, `holder-${i}`, 600, 3000));
    holders.push(c);
  }
}
let holderTimer: NodeJS.Timeout | null = null;
function holdersTalk(): void {
  holderTimer = setInterval(() => {
    for (let i = 0; i < holders.length; i++) if (!holders[i].sock.destroyed) holders[i].sock.write(sa(`holder-${i}`, `holder-${i}`, 600, 3000));
  }, 3000);
}

// ---- chaos on redis ----------------------------------------------------------------------------
let chaosOn = false;
async function chaos(): Promise<void> {
  while (chaosOn && redis) {
    await sleep(15000 + rnd(10000));
    if (!chaosOn) break;
    if (Math.random() < 0.5) { log(`chaos: redis restart`); await redis.restart(); }
    else { log(`chaos: redis SIGSTOP 6 s`); redis.pause(); await sleep(6000); redis.resume(); log('chaos: redis SIGCONT'); }
  }
}

// ---- probes ------------------------------------------------------------------------------------
const t0 = Date.now();
function log(s: string): void { console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${s}`); }
const mb = (b: number): string => (b / 1048576).toFixed(1);
const seriesSeen = new Map<string, Set<string>>();
const lastLines = new Map<string, { lines: number; at: number }>();
async function report(tag: string): Promise<any[]> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const out = [];
  for (const n of nodes) {
    const p = await probe(n);
    const text = await metrics(n);
    const keys = text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.slice(0, l.lastIndexOf(' ')));
    const series = keys.length;
    const seen = seriesSeen.get(n.name);
    if (!seen) seriesSeen.set(n.name, new Set(keys));
    else for (const k of keys) if (!seen.has(k)) { seen.add(k); log(`  new series on ${n.name}: ${k}`); }
    const conn = /^cot_connections (\S+)/m.exec(text)?.[1];
    const prev = lastLines.get(n.name);
    const now = Date.now();
    const lps = prev ? ((p.lines - prev.lines) / ((now - prev.at) / 1000)).toFixed(0) : '-';
    lastLines.set(n.name, { lines: p.lines, at: now });
    const h = Object.entries(p.handles as Record<string, number>).map(([k, v]) => `${k}:${v}`).join(',');
    const sz = Object.entries(p.sizes as Record<string, number>).map(([k, v]) => `${k}=${v}`).join(' ');
    const sp = Object.entries(p.spaces as Record<string, number>).filter(([, v]) => v > 0).map(([k, v]) => `${k}:${mb(v)}`).join(',');
    log(`${tag} ${n.name} spaces[${sp}] rss=${mb(p.rss)}M heap=${mb(p.heapUsed)}M ext=${mb(p.external)}M ab=${mb(p.arrayBuffers)}M fds=${p.fds} series=${series} cot_connections=${conn} lines/s=${lps} handles[${h}] ${sz}`);
    out.push({ ...p, series, conn });
  }
  return out;
}

// ---- run ---------------------------------------------------------------------------------------
let cycles = 0;
let failures = 0;
const perScenario: Record<string, number> = {};
let running = true;
async function worker(): Promise<void> {
  while (running) {
    const name = names[rnd(names.length)];
    try { await scenarios[name](); } catch { failures++; }
    cycles++;
    perScenario[name] = (perScenario[name] ?? 0) + 1;
  }
}

function snapshot(n: Node, tag: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const id = ++probeId;
  return new Promise((r) => { n.pending.set(id, r); n.proc.send({ kind: 'snapshot', id, file: path.join(dir, `${n.name}-${tag}.heapsnapshot`) }); });
}
await sleep(500);
const base = await report('baseline');
if (opts.snapshots) for (const n of nodes) log(`snapshot ${(await snapshot(n, 'baseline')).file}`);
await startHolders(Number(opts.holders));
holdersTalk();
await sleep(2000);
await report('holders');
if (opts.chaos) { chaosOn = true; void chaos(); }
const workers = Array.from({ length: CONC }, () => worker());
const probeTimer = setInterval(() => { void report(`churn cycles=${cycles} fail=${failures}`); }, Number(opts.every) * 1000);
await sleep(SECONDS * 1000);
running = false;
chaosOn = false;
await Promise.all(workers);
clearInterval(probeTimer);
log(`churn done: ${cycles} cycles, ${failures} failed; ${JSON.stringify(perScenario)}`);
await report('after-churn');
if (holderTimer) clearInterval(holderTimer);
for (const h of holders) h.sock.end();
await sleep(Number(opts.settle) * 1000);
const fin = await report('settled');
if (opts.snapshots) for (const n of nodes) log(`snapshot ${(await snapshot(n, 'settled')).file}`);
for (let i = 0; i < nodes.length; i++) {
  const b = base[i];
  const f = fin[i];
  log(`${nodes[i].name}: rss ${mb(b.rss)} -> ${mb(f.rss)} MB, heap ${mb(b.heapUsed)} -> ${mb(f.heapUsed)} MB, fds ${b.fds} -> ${f.fds}, series ${b.series} -> ${f.series}`);
  const top = Object.entries(f.byMsg as Record<string, number>).sort((x, y) => y[1] - x[1]).slice(0, 25);
  for (const [m, c] of top) log(`   ${String(c).padStart(8)}  ${m}`);
}
for (const n of nodes) n.proc.send({ kind: 'stop' });
await Promise.all(nodes.map((n) => new Promise((r) => n.proc.once('exit', r))));
if (redis) await redis.stop();
log(`logs in ${dir}`);
process.exit(0);
