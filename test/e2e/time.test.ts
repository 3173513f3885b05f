// CoT time the way a TAK user in the field notices it: what a newcomer is shown (the latest-SA
// replay), devices whose clocks are wrong, the disconnect notice, pings and their pongs.
// Real TLS clients against a real server; two real server processes on a real redis-server.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import TAK, { CoT } from '@tak-ps/node-tak';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { startTestServer, spawnServer, type TestServer, type SpawnedServer } from '../helpers/server.ts';
import { ANNOUNCE, chatEv, e2eServer } from '../helpers/e2e.ts';
import { CotClient, sa, ping, sleep } from '../helpers/client.ts';
import { TakClient } from '../helpers/takclient.ts';
import { TestRedis } from '../helpers/redis.ts';

const MIN = 60;
let seq = 0;

/** what a newcomer was shown before the announcement: uid -> frames */
function replayOf(c: CotClient): Map<string, string[]> {
  const end = c.frames.findIndex((f) => f.includes(ANNOUNCE));
  assert.ok(end >= 0, 'no announcement');
  const out = new Map<string, string[]>();
  for (const f of c.frames.slice(0, end)) {
    const uid = /<event [^>]*?uid="([^"]+)"/.exec(f)![1];
    out.set(uid, [...(out.get(uid) ?? []), f]);
  }
  return out;
}

/** a delete as ATAK sends one: a p-p link to the uid it removes */
function del(uid: string, type = 'a-f-G-U-C'): string {
  const t = new Date().toISOString();
  const stale = new Date(Date.now() + 20_000).toISOString();
  return `<event version="2.0" uid="${uid}-del-${++seq}" type="t-x-d-d" time="${t}" start="${t}" stale="${stale}" how="h-g-i-g-o">` +
    `<point lat="0" lon="0" hae="0" ce="9999999" le="9999999"/><detail><link uid="${uid}" relation="p-p" type="${type}"/></detail></event>`;
}

const has = (c: { frames: string[] }, needle: string): number => c.frames.filter((f) => f.includes(needle)).length;

describe('e2e: CoT time and what a newcomer is shown', function () {
  this.timeout(30000);
  let pki: SharedPki;
  let srv: TestServer;
  const e = e2eServer();
  const { connect, sentinel, open } = e;
  before(function () { ({ pki, srv } = e); });

  describe('device clock skew', () => {
    it('a device 10 minutes behind: its SA is replayed to newcomers for as long as it says (stale - time), not dropped as stale on arrival', async () => {
      const late = await connect('alpha');
      const peer = await connect('bravo');
      // ATAK's stationary SA: stale 375 s after its time, by a clock 10 minutes slow
      late.send(sa('uid-late', 'LATE', { skewSec: -10 * MIN, staleSec: 375 }));
      await sentinel(late, [peer]);
      assert.equal(has(peer, 'uid="uid-late"'), 1, 'routed live');
      const n = await connect('charlie');
      assert.equal(replayOf(n).get('uid-late')?.length, 1, `not replayed:\n${n.frames.join('\n')}`);
    });

    it('a device 10 minutes ahead: its 3-second SA leaves the replay after 3 s, not 10 minutes later', async () => {
      const early = await connect('alpha');
      early.send(sa('uid-early', 'EARLY', { skewSec: 10 * MIN, staleSec: 3 }));
      const first = await connect('bravo');
      assert.equal(replayOf(first).get('uid-early')?.length, 1, 'replayed while valid');
      await sleep(3600);
      const later = await connect('charlie');
      assert.equal(replayOf(later).get('uid-early'), undefined, 'replayed after its 3 s were over');
    });

    it('the time forms devices write (1-9 fractional digits, none, +00:00): each SA replayed, by a clock 10 minutes behind too', async () => {
      const iso = (ms: number) => new Date(ms).toISOString();
      const forms: Record<string, (ms: number) => string> = {
        atak: iso, // 2026-11-24T12:00:00.123Z
        none: (ms) => iso(ms).slice(0, 19) + 'Z',
        one: (ms) => iso(ms).slice(0, 21) + 'Z',
        wintak7: (ms) => iso(ms).slice(0, 23) + '0000Z', // .NET "o": seven digits
        nine: (ms) => iso(ms).slice(0, 23) + '456789Z',
        offset: (ms) => iso(ms).slice(0, 23) + '+00:00',
        offsetNone: (ms) => iso(ms).slice(0, 19) + '+00:00',
      };
      const watcher = await connect('watcher');
      const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf'];
      let i = 0;
      for (const [form, fmt] of Object.entries(forms)) {
        const c = await connect(names[i++]);
        // one SA on the real clock, then one (the latest, which counts) by a clock 10 minutes slow
        c.send(sa(`uid-${form}`, form.toUpperCase(), { fmt, staleSec: 300 }));
        c.send(sa(`uid-${form}`, form.toUpperCase(), { fmt, staleSec: 300, skewSec: -10 * MIN, lat: 1.5 }));
        await sentinel(c, [watcher]);
      }
      const n = await connect('hotel');
      const r = replayOf(n);
      for (const form of Object.keys(forms)) {
        const got = r.get(`uid-${form}`);
        assert.equal(got?.length, 1, `${form}: not replayed once`);
        assert.match(got![0], /lat="1.5"/, `${form}: not the latest SA`);
      }
      assert.equal(r.size, Object.keys(forms).length);
    });
  });

  describe('latest-SA replay', () => {
    it('stale years ahead, no stale, an unparseable time: replayed while the client is connected, never after it left', async () => {
      const watcher = await connect('watcher');
      const far = await connect('alpha');
      const bare = await connect('bravo');
      const odd = await connect('charlie');
      far.send(sa('uid-far', 'FAR', { staleSec: 5 * 365 * 86400 }));
      bare.send(sa('uid-bare', 'BARE').replace(/ stale="[^"]*"/, ''));
      odd.send(sa('uid-odd', 'ODD').replace(/ time="[^"]*"/, ' time="yesterday"'));
      for (const c of [far, bare, odd]) await sentinel(c, [watcher]);
      const n1 = await connect('delta');
      for (const u of ['uid-far', 'uid-bare', 'uid-odd']) assert.equal(replayOf(n1).get(u)?.length, 1, u);
      for (const c of [far, bare, odd]) c.close();
      await n1.waitFor((f) => has({ frames: f }, 'type="t-x-d-d"') === 3, 5000, 'three notices');
      const n2 = await connect('echo');
      assert.equal(replayOf(n2).size, 0, `replayed after leaving:\n${n2.frames.join('\n')}`);
    });

    it('a client that deletes itself (t-x-d-d linking its own uid): the others get it once, newcomers no longer see its SA, its leaving sends no second notice', async () => {
      const a = await connect('alpha');
      const b = await connect('bravo');
      a.send(sa('uid-bye', 'BYE'));
      b.send(sa('uid-stay', 'STAY'));
      await sentinel(a, [b]);
      a.send(del('uid-bye'));
      await sentinel(a, [b]);
      assert.equal(has(b, 'type="t-x-d-d"'), 1);
      const n = await connect('charlie');
      const r = replayOf(n);
      assert.equal(r.get('uid-bye'), undefined, 'a client that deleted itself was replayed');
      assert.equal(r.get('uid-stay')?.length, 1);
      a.close();
      // bravo leaving too: its notice comes after any notice for alpha would have
      b.close();
      await n.waitFor((f) => f.some((x) => x.includes('type="t-x-d-d"') && x.includes('link uid="uid-stay"')), 5000, 'bravo\'s notice');
      assert.equal(has(n, 'link uid="uid-bye"'), 0, 'a second delete for a client that had deleted itself');
    });

    it('after deleting itself a client that reports again is replayed again, and announced when it leaves', async () => {
      const a = await connect('alpha');
      const b = await connect('bravo');
      a.send(sa('uid-back', 'BACK'));
      a.send(del('uid-back'));
      a.send(sa('uid-back', 'BACK', { lat: 7 }));
      await sentinel(a, [b]);
      const n = await connect('charlie');
      assert.match(replayOf(n).get('uid-back')?.[0] ?? '', /lat="7"/);
      a.close();
      await n.waitFor((f) => f.some((x) => x.includes('type="t-x-d-d"') && x.includes('link uid="uid-back"')), 5000, 'notice');
    });

    it('a delete naming another client\'s uid is routed but does not take that client out of the replay', async () => {
      const a = await connect('alpha');
      const b = await connect('bravo');
      a.send(sa('uid-victim', 'VICTIM'));
      await sentinel(a, [b]);
      b.send(del('uid-victim'));
      await sentinel(b, [a]);
      assert.equal(has(a, 'link uid="uid-victim"'), 1, 'the delete was not routed');
      const n = await connect('charlie');
      assert.equal(replayOf(n).get('uid-victim')?.length, 1);
    });

    it('a uid that moves to another certificate after its first owner left: one notice for the first, the newcomer sees the second owner\'s SA', async () => {
      const watcher = await connect('alpha');
      const first = await connect('bravo');
      first.send(sa('uid-moving', 'MOVER', { lat: 1 }));
      await sentinel(first, [watcher]);
      first.close();
      await watcher.waitFor((f) => has({ frames: f }, 'link uid="uid-moving"') === 1, 5000, 'notice for the first owner');
      const second = await connect('charlie');
      second.send(sa('uid-moving', 'MOVER', { lat: 2 }));
      await sentinel(second, [watcher]);
      const n = await connect('delta');
      const got = replayOf(n).get('uid-moving');
      assert.equal(got?.length, 1);
      assert.match(got![0], /lat="2"/);
      assert.equal(has(watcher, 'link uid="uid-moving"'), 1, 'a notice while the uid is held');
    });
  });

  describe('server-made events', () => {
    it('the disconnect notice: time = start = the server\'s now, stale +20 s, its own uid, a p-p link with the type; the same times in protobuf', async () => {
      const x = await connect('alpha');
      const p = await TakClient.connect(srv.port, await pki.client('bravo'));
      open.push(p);
      await p.negotiate();
      // the leaving device's clock is an hour behind: the notice is in the server's time
      const leaving = await connect('charlie');
      leaving.send(sa('uid-leaving', 'LEAVING', { skewSec: -60 * MIN, type: 'a-f-G-U-C-I' }));
      await sentinel(leaving, [x]);
      await p.waitFor((f) => f.some((s) => s.includes('uid="uid-leaving"')), 5000, 'SA at the protobuf client');
      const t0 = Date.now();
      leaving.close();
      for (const c of [x, p] as Array<{ frames: string[]; waitFor: CotClient['waitFor'] }>) {
        await c.waitFor((f) => f.some((s) => s.includes('t-x-d-d')), 5000, 'notice');
        const notes = c.frames.filter((s) => s.includes('t-x-d-d'));
        assert.equal(notes.length, 1);
        const n = notes[0];
        const attr = (k: string) => new RegExp(`<event [^>]*?\\b${k}="([^"]+)"`).exec(n)![1];
        const time = Date.parse(attr('time'));
        assert.equal(attr('start'), attr('time'));
        assert.equal(Date.parse(attr('stale')) - time, 20_000);
        assert.ok(Math.abs(time - t0) < 5000, `time ${attr('time')} is not the server's now`);
        assert.match(attr('uid'), /^[0-9a-f-]{36}$/);
        assert.match(n, /<link uid="uid-leaving" relation="p-p" type="a-f-G-U-C-I"\/>/);
      }
    });

    it('pings are answered within 2 s while another client floods (the pinger is owed its flood too); the pong\'s times are the server\'s now and +20 s', async () => {
      const flooder = await connect('alpha');
      const sink = await connect('bravo');
      const pinger = await connect('charlie');
      flooder.send(sa('uid-flood', 'FLOOD'));
      await sentinel(flooder, [sink]);
      const burst = Array.from({ length: 2000 }, (_, i) => sa('uid-flood', 'FLOOD', { lat: i / 100 })).join('');
      const rtts: number[] = [];
      for (let i = 0; i < 5; i++) {
        flooder.send(burst);
        const sent = Date.now();
        pinger.send(ping(`ANDROID-pinger-ping`));
        await pinger.waitFor((f) => has({ frames: f }, 't-x-c-t-r') === i + 1, 5000, `pong ${i + 1}`);
        rtts.push(Date.now() - sent);
        const pong = pinger.frames.filter((f) => f.includes('t-x-c-t-r'))[i];
        const time = Date.parse(/time="([^"]+)"/.exec(pong)![1]);
        const stale = Date.parse(/stale="([^"]+)"/.exec(pong)![1]);
        assert.ok(time <= Date.now() && time > sent - 2000, `pong time ${new Date(time).toISOString()}`);
        assert.equal(stale - time, 20_000);
      }
      assert.ok(Math.max(...rtts) < 2000, `pong round trips ${rtts.join(', ')} ms`);
      assert.equal(has(sink, 't-x-c-t'), 0);
    });

    it('TAK protocol negotiation while another client floods: connected and answered within 3 s, time = start = now, stale +60 s', async () => {
      const flooder = await connect('alpha');
      const sink = await connect('bravo');
      flooder.send(sa('uid-flood2', 'FLOOD'));
      await sentinel(flooder, [sink]);
      const burst = Array.from({ length: 2000 }, (_, i) => sa('uid-flood2', 'FLOOD', { lat: i / 100 })).join('');
      flooder.send(burst);
      const t0 = Date.now();
      const p = await TakClient.connect(srv.port, await pki.client('charlie'));
      open.push(p);
      flooder.send(burst);
      const { status, response, announcement } = await p.negotiate();
      const took = Date.now() - t0;
      assert.equal(status, 'true');
      assert.ok(took < 3000, `connect + negotiation took ${took} ms`);
      for (const ev of [announcement, response]) {
        const attr = (k: string) => new RegExp(`<event [^>]*?\\b${k}="([^"]+)"`).exec(ev)![1];
        const time = Date.parse(attr('time'));
        assert.equal(attr('start'), attr('time'));
        assert.equal(Date.parse(attr('stale')) - time, 60_000);
        assert.ok(time >= t0 - 1000 && time <= Date.now(), `time ${attr('time')}`);
      }
      // the answer keeps the request's uid (ATAK matches them)
      assert.match(response, /uid="protouid-/);
    });

    it('node-tak (@tak-ps/node-tak) reads the disconnect notice as a CoT with the link to the uid that left', async () => {
      // node-tak narrates every connect on stderr
      const origError = console.error;
      console.error = (...args: unknown[]) => { if (!String(args[0]).startsWith('ok - ')) origError(...args); };
      try {
        await noticeAtNodeTak();
      } finally {
        console.error = origError;
      }
    });

    async function noticeAtNodeTak(): Promise<void> {
      const tak = await TAK.connect('notice', new URL(`ssl://127.0.0.1:${srv.port}`), {
        cert: readFileSync((await pki.client('alpha')).cert, 'utf8'), key: readFileSync((await pki.client('alpha')).key, 'utf8'),
      });
      open.push({ close: () => tak.destroy() });
      const got: Array<InstanceType<typeof CoT>> = [];
      tak.on('cot', (c: InstanceType<typeof CoT>) => { got.push(c); });
      const leaving = await connect('bravo');
      leaving.send(sa('uid-nt-leaving', 'NTLEAVING', { type: 'a-f-G-E-V-C' }));
      const deadline = Date.now() + 5000;
      while (!got.some((c) => c.raw.event._attributes.uid === 'uid-nt-leaving') && Date.now() < deadline) await sleep(20);
      leaving.close();
      while (!got.some((c) => c.raw.event._attributes.type === 't-x-d-d') && Date.now() < deadline + 5000) await sleep(20);
      const notes = got.filter((c) => c.raw.event._attributes.type === 't-x-d-d');
      assert.equal(notes.length, 1, 'node-tak did not deliver the notice once');
      const e = notes[0].raw.event;
      const link = (Array.isArray(e.detail?.link) ? e.detail.link[0] : e.detail?.link) as { _attributes: Record<string, string> };
      assert.equal(link._attributes.uid, 'uid-nt-leaving');
      assert.equal(link._attributes.relation, 'p-p');
      assert.equal(link._attributes.type, 'a-f-G-E-V-C');
      assert.equal(Date.parse(e._attributes.stale) - Date.parse(e._attributes.time), 20_000);
    }
  });
});

describe('e2e: a device with a slow clock is not idle while its SA is valid', function () {
  this.timeout(30000);
  let pki: SharedPki;
  let srv: TestServer;

  before(async function () {
    this.timeout(60000);
    pki = await testPki();
    srv = await startTestServer(pki.dir, { idleTimeout: '800' });
  });
  after(async () => { await srv?.stop(); });

  it('an SA valid for 4 s by a clock 10 minutes slow keeps the connection open for those 4 s', async () => {
    const c = await CotClient.connect(srv.port, await pki.client('alpha'));
    try {
      c.send(sa('uid-slow', 'SLOW', { skewSec: -10 * MIN, staleSec: 4 }));
      await sleep(2500);
      assert.equal(c.closed, false, 'closed as idle although its SA was valid');
      await c.waitClosed(6000);
    } finally {
      c.close();
    }
  });
});

describe('e2e: clock skew across two nodes on Redis', function () {
  this.timeout(60000);
  let pki: SharedPki;
  let redis: TestRedis;
  const nodes: SpawnedServer[] = [];
  const clients: CotClient[] = [];

  before(async function () {
    this.timeout(60000);
    pki = await testPki();
    redis = await TestRedis.start();
    nodes.push(...await Promise.all(['time-a', 'time-b'].map((id) =>
      spawnServer(['--certs-dir', pki.dir, '--redis', redis.url, '--node-id', id, '--bus-heartbeat', '500']))));
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    await redis?.stop();
  });

  /** a client of certificate `name` on `node`, closed after the tests; `replayed`: once it has had its replay */
  async function join(node: SpawnedServer, name: string, replayed = false): Promise<CotClient> {
    const c = await CotClient.connect(node.port, await pki.client(name));
    clients.push(c);
    if (replayed) await c.waitFor((f) => f.some((x) => x.includes(ANNOUNCE)), 5000, 'announcement');
    return c;
  }

  it('an SA from a device 10 minutes behind on node A is replayed to a newcomer on node B, and leaves it with its client', async () => {
    const [A, B] = nodes;
    const late = await join(A, 'alpha');
    const watcher = await join(B, 'bravo', true);
    late.send(sa('uid-late-a', 'LATE', { skewSec: -10 * MIN, staleSec: 375 }));
    await watcher.waitFor((f) => has({ frames: f }, 'uid="uid-late-a"') === 1, 5000, 'SA across nodes');
    const n = await join(B, 'charlie', true);
    assert.equal(replayOf(n).get('uid-late-a')?.length, 1, 'not replayed on the other node');
    late.close();
    await watcher.waitFor((f) => has({ frames: f }, 'link uid="uid-late-a"') === 1, 5000, 'notice across nodes');
    const n2 = await join(B, 'delta', true);
    assert.equal(replayOf(n2).get('uid-late-a'), undefined, 'replayed after it left');
  });

  it('a client on node A deleting itself: out of the replay on node B too, one delete there, no second one when it leaves', async () => {
    const [A, B] = nodes;
    const bye = await join(A, 'echo');
    const watcher = await join(B, 'foxtrot', true);
    bye.send(sa('uid-bye-a', 'BYE'));
    await watcher.waitFor((f) => has({ frames: f }, 'uid="uid-bye-a"') === 1, 5000, 'SA across nodes');
    bye.send(del('uid-bye-a'));
    await watcher.waitFor((f) => has({ frames: f }, 'link uid="uid-bye-a"') === 1, 5000, 'the delete across nodes');
    const n = await join(B, 'golf', true);
    assert.equal(replayOf(n).get('uid-bye-a'), undefined, 'replayed on B after it deleted itself');
    bye.close();
    // a later event from A to B shows whatever A sent on the close has arrived
    const other = await join(A, 'hotel');
    other.send(chatEv('after-bye'));
    await watcher.waitFor((f) => f.some((x) => x.includes('>after-bye<')), 5000, 'an event after the close');
    await sleep(300);
    assert.equal(has(watcher, 'link uid="uid-bye-a"'), 1, 'a second delete');
  });
});
