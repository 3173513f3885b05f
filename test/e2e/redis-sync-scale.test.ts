// The state sync at scale: a sync answer of tens of MB (thousands of clients' SAs) queued in a
// node's subscriber ahead of the echo of its own heartbeat is a node behind, not a Redis that
// hangs. Judged as a hang, the node dropped its connections and, back, asked for a sync again —
// which every node answered again (bench/soak/sync.ts: after a Redis restart, 3 × 2,000 clients,
// 13 sync requests and 130 MB of answers over 30 s). Here one real node, a real redis-server with
// its default limits, and a burst of replay batches as big as such an answer.
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { spawnServer, metricValue, type SpawnedServer } from '../helpers/server.ts';
import { RedisBus } from '../../src/bus/redis.ts';
import { Router } from '../../src/router.ts';
import { FlushScheduler } from '../../src/session.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { createLogger } from '../../src/ops/log.ts';
import { TestRedis } from '../helpers/redis.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';
import { BatchType, decodeBatch, decodeHeader, encodeBatch, encodeMark, markOf } from '../../src/bus/codec.ts';
import { EnvelopeKind, type Envelope } from '../../src/bus/types.ts';

describe('e2e: Redis bus under a large sync answer', function () {
  this.timeout(60_000);
  let pki: SharedPki;
  let redis: TestRedis;
  let node: SpawnedServer | null = null;
  let pub: Redis | null = null;

  before(async () => {
    pki = await testPki();
    redis = await TestRedis.start();
  });
  after(async () => {
    pub?.disconnect();
    await node?.stop('SIGKILL');
    await redis.stop();
  });

  it('a node reading a 23-MB burst of SAs behind its heartbeat echo stays on the bus (no false hang, no reconnect, no new sync request)', async () => {
    node = await spawnServer(['--certs-dir', pki.dir, '--redis', redis.url, '--node-id', 'behind', '--bus-heartbeat', '100']);
    pub = new Redis(redis.url);
    const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
      metricValue(await (await fetch(`http://127.0.0.1:${node!.metricsPort}/metrics`)).text(), name, labels);
    await sleep(500); // a few beats: the node's echo check is running

    // another node's answer to a sync request: 2,000-odd-byte frames would make 12,000 SAs; small
    // ones make it costlier per byte, so that reading it takes this node several beats
    const t = new Date().toISOString();
    const stale = new Date(Date.now() + 3_600_000).toISOString();
    const stop = Date.now() + 3_600_000;
    const BATCHES = 36;
    const PER = 2000;
    const bufs: Buffer[] = [];
    for (let b = 0; b < BATCHES; b++) {
      const envs: Envelope[] = [];
      for (let i = 0; i < PER; i++) {
        const uid = `far-${b}-${i}`;
        const frame = Buffer.from(`<event version="2.0" uid="${uid}" type="a-f-G-U-C" time="${t}" start="${t}" stale="${stale}" how="m-g"><point lat="1" lon="2" hae="0" ce="9" le="9"/><detail><contact endpoint="*:-1:stcp" callsign="${uid}"/></detail></event>`);
        envs.push({ kind: EnvelopeKind.replay, node: 'far', session: i + 1, seq: b * PER + i + 1, uid, type: 'a-f-G-U-C', staleMs: stop, callsigns: null, uids: null, frame, t0: 0 });
      }
      bufs.push(encodeBatch({ type: BatchType.events, node: 'far', epoch: 7, seq: b + 1 }, envs));
    }
    const bytes = bufs.reduce((a, x) => a + x.length, 0);
    const beats = setInterval(() => { void pub!.publish('cotstream:v1', encodeBatch({ type: BatchType.heartbeat, node: 'far', epoch: 7, seq: 0 }, [])); }, 100);
    try {
      // all at once, as an answering node hands its batches to Redis
      const p = pub.pipeline();
      for (const b of bufs) p.publish('cotstream:v1', b);
      await p.exec();
      const want = BATCHES * PER;
      const t0 = Date.now();
      const downs = (): unknown[] => node!.lines.filter((l) => l.audit === 'bus' && l.state === 'down').map((l) => l.err);
      while (await metric('cot_bus_messages_total', { direction: 'in' }) < want) {
        assert.deepEqual(downs(), [], 'the node took its backlog for a Redis that hangs');
        assert.ok(Date.now() - t0 < 30_000, 'the node did not read the burst within 30 s');
        await sleep(100);
      }
      console.log(`      ${(bytes / 1048576).toFixed(1)} MB, ${want} SAs read in ~${Date.now() - t0} ms at a 100-ms heartbeat`);
    } finally {
      clearInterval(beats);
    }
    await sleep(500);
    const downs = node.lines.filter((l) => l.audit === 'bus' && l.state === 'down');
    assert.deepEqual(downs.map((l) => l.err), [], 'the node took its backlog for a Redis that hangs');
    assert.equal(await metric('cot_bus_up'), 1);
    assert.equal(node.lines.filter((l) => l.audit === 'bus' && l.state === 'up').length, 1, 'connected once, never again');
  });

  it('requests that arrive together get one answer; a gap that a complete answer has since repaired asks for nothing more', async () => {
    // a Redis of its own: no other node to ask or answer meanwhile
    const r = await TestRedis.start();
    const n = await spawnServer(['--certs-dir', pki.dir, '--redis', r.url, '--node-id', 'answerer', '--bus-heartbeat', '500']);
    const c = await CotClient.connect(n.port, await pki.client('alpha'));
    const mon = new Redis(r.url);
    const p2 = new Redis(r.url);
    try {
      c.send(sa('uid-alpha', 'ALPHA', { staleSec: 600 }));
      const seen: Array<{ type: string; replayUids: string[] }> = [];
      mon.on('messageBuffer', (_ch: Buffer, msg: Buffer) => {
        const h = decodeHeader(msg);
        if (h.node !== 'answerer') return;
        const type = h.type === BatchType.sync ? 'sync' : h.type === BatchType.heartbeat ? 'beat' : h.count === 0 ? (markOf(msg, h) ?? 'end') : 'events';
        seen.push({ type, replayUids: type === 'events' ? decodeBatch(msg).envelopes.filter((e) => e.kind === EnvelopeKind.replay).map((e) => e.uid) : [] });
      });
      await mon.subscribe('cotstream:v1');
      await sleep(1200); // its own join and first beats are over
      seen.length = 0;

      // two nodes ask at once, as after a Redis restart: one answer (start mark, alpha's SA, end mark)
      // (one write: on a loaded machine two round trips may take longer than the 100-ms window)
      await p2.pipeline()
        .publish('cotstream:v1', encodeBatch({ type: BatchType.sync, node: 'asker-1', epoch: 1, seq: 1 }, []))
        .publish('cotstream:v1', encodeBatch({ type: BatchType.sync, node: 'asker-2', epoch: 2, seq: 1 }, []))
        .exec();
      await sleep(700);
      const starts = seen.filter((x) => x.type === 'start').length;
      assert.equal(starts, 1, `answers to two requests that arrived together: ${starts} (${seen.map((x) => x.type).join(" ")}; bus lines ${JSON.stringify(n.lines.filter((l) => l.audit === "bus").map((l) => l.msg))})`);
      assert.deepEqual(seen.flatMap((x) => x.replayUids), ['uid-alpha'], 'the one answer holds the state');
      assert.equal(seen.filter((x) => x.type === 'end').length, 1);

      // a node whose batches we missed (seq 1, then 5), then its complete answer to someone's
      // request: repaired, so the answerer must not ask every node for its state at its next beat
      seen.length = 0;
      // a node that reconnects (its echo late on a loaded machine) asks on being back: not this
      const ups = (): number => n.lines.filter((l) => l.audit === 'bus' && l.state === 'up').length;
      const up0 = ups();
      const g = (seq: number): { type: BatchType; node: string; epoch: number; seq: number } => ({ type: BatchType.events, node: 'gappy', epoch: 3, seq });
      await p2.publish('cotstream:v1', encodeBatch({ type: BatchType.heartbeat, node: 'gappy', epoch: 3, seq: 1 }, []));
      await p2.publish('cotstream:v1', encodeMark(g(5), 'start'));
      await p2.publish('cotstream:v1', encodeMark(g(6), 'end'));
      const beats = setInterval(() => { void p2.publish('cotstream:v1', encodeBatch({ type: BatchType.heartbeat, node: 'gappy', epoch: 3, seq: 0 }, [])); }, 250);
      try {
        await sleep(1500); // three beats of the answerer
      } finally {
        clearInterval(beats);
      }
      await sleep(500); // the node's log lines reach us after its bus messages
      const downs = n.lines.filter((l) => l.audit === 'bus' && l.state === 'down').map((l) => l.err);
      assert.equal(seen.filter((x) => x.type === 'sync').length, ups() - up0, `asked for a sync though the gap was repaired (bus down: ${JSON.stringify(downs)})`);
      const asked = seen.filter((x) => x.type === 'sync').length;
      // and a gap nothing repaired still asks (once)
      await p2.publish('cotstream:v1', encodeBatch({ type: BatchType.heartbeat, node: 'gappy', epoch: 3, seq: 9 }, []));
      await sleep(1200);
      assert.ok(seen.filter((x) => x.type === 'sync').length > asked, 'an unrepaired gap asks for a sync');
    } finally {
      c.close();
      mon.disconnect();
      p2.disconnect();
      await n.stop('SIGKILL');
      await r.stop();
    }
  });

  it('an answer many times the in-flight bound goes out whole, paced, and read as it goes: a client that left meanwhile is not in it, a renewed SA is', async () => {
    // in-process, to hold the answer at a known point: the real RedisBus and Router of a node on a
    // real redis-server, with an in-flight bound of 64 KiB (32 MiB in production: some 8,000
    // clients' 4-KB SAs), watched by a plain subscriber as another node would be
    const r = await TestRedis.start();
    const metrics = new Metrics({ defaultMetrics: false });
    const log = createLogger('silent');
    const BOUND = 64 * 1024;
    const bus = new RedisBus({ url: r.url, nodeId: 'answerer', metrics, log, maxInflightBytes: BOUND, maxBatchBytes: 4096, heartbeatMs: 60_000 });
    const router = new Router(bus, new FlushScheduler(metrics), metrics, log, { announce: false });
    const mon = new Redis(r.url);
    const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> => metricValue(await metrics.registry.metrics(), name, labels);
    const t = new Date().toISOString();
    const staleMs = Date.now() + 3_600_000;
    const stale = new Date(staleMs).toISOString();
    const frame = (uid: string, remarks = ''): Buffer => Buffer.from(`<event version="2.0" uid="${uid}" type="a-f-G-U-C" time="${t}" start="${t}" stale="${stale}" how="m-g"><point lat="1" lon="2" hae="0" ce="9" le="9"/><detail><contact endpoint="*:-1:stcp" callsign="${uid}"/><remarks>${remarks}</remarks></detail></event>`);
    const env = (kind: EnvelopeKind, i: number, f: Buffer): Envelope => ({ kind, node: 'answerer', session: i + 1, seq: 0, uid: `u-${i}`, type: 'a-f-G-U-C', staleMs, callsigns: null, uids: null, frame: f, t0: 0 });
    const seen: Array<{ mark: string | null; envs: Envelope[]; bytes: number }> = [];
    mon.on('messageBuffer', (_ch: Buffer, msg: Buffer) => {
      const h = decodeHeader(msg);
      if (h.node !== 'answerer' || h.type !== BatchType.events) return;
      seen.push({ mark: h.count === 0 ? markOf(msg, h) : null, envs: h.count === 0 ? [] : decodeBatch(msg).envelopes, bytes: msg.length });
    });
    try {
      await mon.subscribe('cotstream:v1');
      await bus.start(router.deliver, router);
      assert.equal(bus.isUp(), true);
      // 3,000 clients' SAs (about 1 MB: 16 times the bound), cached as this node's own; published
      // live a few at a time, under the bound
      const N = 3000;
      for (let i = 0; i < N; i += 50) {
        for (let j = i; j < i + 50; j++) bus.publish(env(EnvelopeKind.sa, j, frame(`u-${j}`)));
        await sleep(2);
      }
      await sleep(300);
      assert.equal(await metric('cot_sa_cache_entries'), N);
      const errors0 = await metric('cot_bus_publish_errors_total');
      seen.length = 0;

      // a sync request is answered (here called at once, as answerSoon's timer does): the first
      // part goes out now, the rest as Redis acknowledges it
      (bus as unknown as { answerSync(): void }).answerSync();
      // meanwhile the last 50 clients leave, and one renews its SA
      const LEFT = 50;
      for (let i = N - LEFT; i < N; i++) bus.publish(env(EnvelopeKind.gone, i, Buffer.from(`<event uid="u-${i}" type="t-x-d-d"/>`)));
      const renewed = frame('u-2000', 'renewed');
      bus.publish(env(EnvelopeKind.sa, 2000, renewed));

      const t0 = Date.now();
      while (!seen.some((x) => x.mark === 'end')) {
        assert.ok(Date.now() - t0 < 10_000, `no end mark within 10 s (${seen.length} batches seen)`);
        await sleep(20);
      }
      const start = seen.findIndex((x) => x.mark === 'start');
      const end = seen.findIndex((x) => x.mark === 'end');
      assert.ok(start >= 0 && start < end, 'framed by a start and an end mark');
      const replays = seen.slice(start, end).flatMap((x) => x.envs.filter((e) => e.kind === EnvelopeKind.replay));
      const uids = replays.map((e) => e.uid);
      assert.equal(new Set(uids).size, uids.length, 'each SA once');
      assert.equal(uids.length, N - LEFT, 'every client still connected, none of those that left');
      assert.deepEqual(uids.filter((u) => Number(u.slice(2)) >= N - LEFT), []);
      assert.ok(replays.find((e) => e.uid === 'u-2000')!.frame.equals(renewed), 'the SA as it is when the answer reaches it');
      const answerBytes = seen.slice(start, end + 1).reduce((a, x) => a + x.bytes, 0);
      assert.ok(answerBytes > 8 * BOUND, `the answer (${answerBytes} B) is many times the in-flight bound`);
      assert.equal(await metric('cot_bus_publish_errors_total'), errors0, 'nothing discarded');
      assert.equal(await metric('cot_bus_sync_total', { event: 'answered' }), 1);
      // the live notices went out too (the disconnects, and the renewed SA)
      const live = seen.flatMap((x) => x.envs.filter((e) => e.kind !== EnvelopeKind.replay));
      assert.equal(live.filter((e) => e.kind === EnvelopeKind.gone).length, LEFT);
      assert.equal(live.filter((e) => e.kind === EnvelopeKind.sa).length, 1);
      console.log(`      ${(answerBytes / 1024).toFixed(0)} KiB answer in ${end - start + 1} publishes, ${Date.now() - t0} ms, at a ${BOUND / 1024}-KiB bound`);

      // a request during an answer gets one more, after it (not interleaved with it); an answer
      // cut off by a lost publisher connection is sent again, whole, once it is back
      const answers = async (want: number): Promise<Array<{ mark: string | null; envs: Envelope[] }>> => {
        const t1 = Date.now();
        while (seen.filter((x) => x.mark === 'end').length < want) {
          assert.ok(Date.now() - t1 < 10_000, `${want} end marks not seen within 10 s`);
          await sleep(20);
        }
        return seen.filter((x) => x.mark !== null || x.envs.some((e) => e.kind === EnvelopeKind.replay));
      };
      const complete = (part: Array<{ mark: string | null; envs: Envelope[] }>): void => {
        assert.equal(part[0].mark, 'start');
        assert.equal(part[part.length - 1].mark, 'end');
        assert.equal(part.slice(1, -1).filter((x) => x.mark !== null).length, 0, 'nothing else between the marks');
        assert.equal(part.flatMap((x) => x.envs).length, N - LEFT);
      };
      seen.length = 0;
      const answerSync = (bus as unknown as { answerSync(): void }).answerSync.bind(bus);
      answerSync();
      answerSync();
      const two = await answers(2);
      const mid = two.findIndex((x) => x.mark === 'end') + 1;
      complete(two.slice(0, mid));
      complete(two.slice(mid));
      assert.equal(await metric('cot_bus_sync_total', { event: 'answered' }), 3);

      seen.length = 0;
      answerSync();
      (bus as unknown as { pub: { stream: { destroy(): void } } }).pub.stream.destroy();
      const again = await answers(1);
      const last = again.map((x) => x.mark).lastIndexOf('start');
      assert.ok(last > 0, `the cut answer, then a new one (marks: ${again.map((x) => x.mark).filter((m) => m !== null).join(' ')})`);
      assert.equal(again.slice(0, last).filter((x) => x.mark === 'end').length, 0, 'the cut answer has no end mark');
      complete(again.slice(last));
      assert.equal(await metric('cot_bus_sync_total', { event: 'answered' }), 4);
    } finally {
      mon.disconnect();
      router.close();
      await bus.close();
      await r.stop();
    }
  });
});
