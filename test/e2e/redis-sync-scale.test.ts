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
});
