// TAK Protocol bench (`make bench-proto`): the server's whole per-event path, without sockets —
// framer, (protobuf decode,) scan, router, bus, delivery, (protobuf encode,) per-session write
// batching — for XML and protobuf clients in one run, each printed as a ratio to XML -> XML.
//
// Real Session, Router, MemoryBus and FlushScheduler objects; each session's socket is an
// in-memory Duplex that counts and discards what is written. One sender pushes a stream of the
// sample events (16 KiB chunks, as TLS records arrive) to R receivers; the flush runs after each
// chunk, as the event loop would. Variants:
//   xml -> xml        everyone speaks XML (the baseline)
//   proto -> proto    sender and receivers negotiated protobuf: decode on the way in, one encode
//                     per event on the way out
//   xml -> mixed      XML sender, half the receivers on protobuf (one encode per event, shared)
//   proto -> xml      protobuf sender, XML receivers (decode only)
import os from 'node:os';
import { Duplex, Writable } from 'node:stream';
import { Metrics } from '../src/ops/metrics.ts';
import { createLogger } from '../src/ops/log.ts';
import { MemoryBus } from '../src/bus/memory.ts';
import { Router } from '../src/router.ts';
import { FlushScheduler, Session, type SessionLimits } from '../src/session.ts';
import { encodeStreamMessage } from '../protocol/takproto.ts';
import { loadSamples } from '../test/helpers/samples.ts';
import { numericArgs } from './lib/args.ts';

const { seconds: SECONDS, receivers: RECEIVERS } = numericArgs<{ seconds: number; receivers: number }>('bench/takproto.ts',
  "the server's per-event path (framer, decode, scan, route, encode, batched write), no sockets, for XML and TAK protocol (protobuf) clients: xml -> xml, proto -> proto, xml -> mixed, proto -> xml (make bench-proto BENCH_ARGS='--receivers 100')",
  { seconds: ['CPU seconds per variant in each of 5 interleaved rounds', 2], receivers: ['receiving sessions', 10] });
const ROUNDS = 5;
const CHUNK = 16384;

class NullSocket extends Duplex {
  written = 0;
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void { this.written += chunk.length; cb(); }
}

const limits: SessionLimits = {
  maxFrameBytes: 1 << 20, maxSendBuffer: 64 << 20, slowConsumerTimeout: 0, idleTimeout: 0, rateEvents: 0, rateBurst: 0, rateBytes: 0,
};
const log = createLogger('error', new Writable({ write(_c, _e, cb) { cb(); } }));
const identity = (n: number) => ({ cn: `bench-${n}`, serial: `${n.toString(16)}`, fingerprint: '', remote: '127.0.0.1:1', plaintext: false });

// Events every receiver gets (no <marti>): the SA, the 911 alert, the spot marker, the delete.
const samples = loadSamples();
const events = ['01-sa-atak-civ-4.0-streaming.xml', '06-emergency-911-b-a-o-tbl.xml', '07-marker-spot-b-m-p-s-m.xml', '10-delete-forcedelete-t-x-d-d.xml']
  .map((n) => samples.get(n)!);
const PER_PASS = 4000;
function stream(units: Buffer[]): Buffer[] {
  const parts: Buffer[] = [];
  for (let i = 0; i < PER_PASS; i++) parts.push(units[i % units.length]);
  const all = Buffer.concat(parts);
  const chunks: Buffer[] = [];
  for (let p = 0; p < all.length; p += CHUNK) chunks.push(all.subarray(p, p + CHUNK));
  return chunks;
}
const xmlStream = stream(events);
const protoUnits = events.map((e) => encodeStreamMessage(e)!);
const protoStream = stream(protoUnits);

interface Variant { name: string; senderProto: boolean; protoReceivers: number; chunks: Buffer[] }
const variants: Variant[] = [
  { name: 'xml -> xml', senderProto: false, protoReceivers: 0, chunks: xmlStream },
  { name: 'proto -> proto', senderProto: true, protoReceivers: RECEIVERS, chunks: protoStream },
  { name: 'xml -> mixed (half proto)', senderProto: false, protoReceivers: Math.floor(RECEIVERS / 2), chunks: xmlStream },
  { name: 'proto -> xml', senderProto: true, protoReceivers: 0, chunks: protoStream },
];

async function setup(v: Variant) {
  const metrics = new Metrics();
  const flusher = new FlushScheduler(metrics);
  const bus = new MemoryBus('bench', metrics);
  const router = new Router(bus, flusher, metrics, log, { announce: false });
  await bus.start(router.deliver);
  const mk = (n: number, proto: boolean) => {
    const sock = new NullSocket();
    const s = new Session(sock, identity(n), router, limits, metrics, flusher, log);
    router.add(s);
    if (proto) s.useProtobuf();
    return { s, sock };
  };
  const sender = mk(0, v.senderProto);
  const receivers = Array.from({ length: RECEIVERS }, (_, i) => mk(i + 1, i < v.protoReceivers));
  return { flusher, sender, receivers, metrics };
}

/** CPU seconds of this process */
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

async function measure(v: Variant): Promise<{ evs: number; inBytes: number; outBytes: number; delivered: number }> {
  const { flusher, sender, receivers } = await setup(v);
  const inBytes = v.chunks.reduce((a, c) => a + c.length, 0);
  // warm-up pass, and a check that every receiver got every event
  for (const c of v.chunks) { sender.sock.emit('data', c); flusher.flush(); }
  const outAfterWarm = receivers.map((r) => r.s.eventsOut);
  if (outAfterWarm.some((n) => n !== PER_PASS)) throw new Error(`${v.name}: receivers got ${outAfterWarm.join(',')} of ${PER_PASS}`);
  let passes = 0;
  const c0 = cpu();
  let c1 = c0;
  while (c1 - c0 < SECONDS) {
    for (const c of v.chunks) { sender.sock.emit('data', c); flusher.flush(); }
    passes++;
    c1 = cpu();
  }
  const outBytes = receivers.reduce((a, r) => a + r.sock.written, 0) / (passes + 1);
  for (const r of [sender, ...receivers]) r.s.close('shutdown');
  return { evs: (passes * PER_PASS) / (c1 - c0), inBytes, outBytes, delivered: PER_PASS * RECEIVERS };
}

const m = os.cpus()[0];
console.log(`cotstream TAK protocol bench — node ${process.version}, ${os.platform()} ${os.arch()}, ${os.cpus().length}× ${m?.model ?? '?'}`);
console.log(`one sender -> ${RECEIVERS} receivers, ${PER_PASS} events per pass (samples 01 SA, 06, 07, 10 in turn), ${CHUNK} B chunks`);
console.log(`events/s per CPU second of this process (framer, decode, scan, route, encode, batch write), best of ${ROUNDS} interleaved rounds of ${SECONDS}s\n`);

const best = new Map<string, { evs: number; inBytes: number; outBytes: number; delivered: number }>();
for (let r = 0; r < ROUNDS; r++) {
  for (const v of variants) {
    const res = await measure(v);
    const prev = best.get(v.name);
    if (!prev || res.evs > prev.evs) best.set(v.name, res);
  }
}
const base = best.get(variants[0].name)!.evs;
const pad = Math.max(...variants.map((v) => v.name.length));
console.log(`  ${'variant'.padEnd(pad)}  ${'events/s'.padStart(10)}  ${'deliveries/s'.padStart(12)}  ${'B/event in'.padStart(10)}  ${'B/event out'.padStart(11)}  vs xml -> xml`);
for (const v of variants) {
  const r = best.get(v.name)!;
  console.log(`  ${v.name.padEnd(pad)}  ${Math.round(r.evs).toLocaleString('en-US').padStart(10)}  ${Math.round(r.evs * RECEIVERS).toLocaleString('en-US').padStart(12)}  ${(r.inBytes / PER_PASS).toFixed(0).padStart(10)}  ${(r.outBytes / r.delivered).toFixed(0).padStart(11)}  ${(r.evs / base).toFixed(2)}×`);
}
console.log(`\nload average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
