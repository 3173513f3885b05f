// Issue 6: hostile and odd input never crashes the server nor spoils the SA cache. Three clients
// send thousands of mutated real CoT events (seeded, so a failure replays); afterwards the server
// still routes, and a newcomer's replay holds only well-formed SAs of clients still connected.
import assert from 'node:assert/strict';
import { testPki, type SharedPki } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { CotClient, sa, sleep } from '../helpers/client.ts';
import { loadSamples } from '../helpers/samples.ts';
import { scan } from '../../protocol/scan.ts';

/** mulberry32: a small seeded PRNG */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = ['<', '>', '&', '&amp;', '&#0;', '&#x1F600;', '"', "'", '<marti>', '</marti>', '<marti/>', '<dest callsign="FZ-1"/>',
  '<dest uid="fz-uid-2"/>', '<dest callsign="All Streaming"/>', '<dest/>', '<contact endpoint="*:-1:stcp" callsign="FZ-X"/>',
  '<link uid="fz-uid-1" relation="p-p"/>', 'stale="2000-01-01T00:00:00Z"', 'type="t-x-c-t"', 'type="t-x-d-d"', 'uid="takPing"',
  'uid="fz-uid-1"', 'uid="fz-uid-2"', '\u0000', '\ufffe', '<![CDATA[', ']]>', '<!--', '-->', '<?pi?>', '</event>', '<event>', '\xff'];

function mutate(src: string, r: () => number): string {
  let s = src;
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(r() * s.length);
    const op = Math.floor(r() * 4);
    if (op === 0) s = s.slice(0, at) + s.slice(at + Math.floor(r() * 20));
    else if (op === 1) s = s.slice(0, at) + PIECES[Math.floor(r() * PIECES.length)] + s.slice(at);
    else if (op === 2) { const len = Math.floor(r() * 40); s = s.slice(0, at) + s.slice(at, at + len) + s.slice(at); }
    else s = s.replace(/uid="[^"]*"/, `uid="fz-uid-${Math.floor(r() * 4)}"`);
  }
  return s;
}

describe('e2e: routing under fuzzed input', function () {
  this.timeout(60000);
  let pki: SharedPki;
  let srv: TestServer;
  const open: CotClient[] = [];
  before(async function () {
    pki = await testPki();
    // small frames: a mutation that opens a quote or comment swallows the stream only this far
    srv = await startTestServer(pki.dir, { rateEvents: '0', rateBytes: '0', maxFrameBytes: '4096' });
  });
  after(async () => { for (const c of open) c.close(); await srv?.stop(); });

  it('3 clients x 1,500 mutated samples: no crash, no internal error, routing and the SA cache intact', async () => {
    // not the t-x-takp-q request: a client that sends it is switched to protobuf, and XML after
    // that is (rightly) fatal — that path has its own tests
    const samples = [...loadSamples()].filter(([name]) => !name.includes('takp-q')).map(([, b]) => b.toString('latin1'));
    const r = rng(0xc07);
    const names = ['alpha', 'bravo', 'charlie'];
    const fz: CotClient[] = [];
    for (let i = 0; i < names.length; i++) {
      const c = await CotClient.connect(srv.port, await pki.client(names[i]));
      open.push(c);
      fz.push(c);
      c.send(sa(`fz-uid-${i + 1}`, `FZ-${i + 1}`));
    }
    const watcher = await CotClient.connect(srv.port, await pki.client('delta'));
    open.push(watcher);
    await watcher.waitFor((f) => f.filter((x) => /uid="fz-uid-[123]"/.test(x)).length >= 3, 5000, 'the fuzz clients\' SAs');
    for (let round = 0; round < 15; round++) {
      for (const c of fz) {
        let burst = '';
        for (let i = 0; i < 100; i++) burst += mutate(samples[Math.floor(r() * samples.length)], r) + (r() < 0.5 ? '\n' : '');
        c.send(Buffer.from(burst, 'latin1'));
      }
      await sleep(10);
    }
    // let it all be processed, then prove the server still routes for everyone
    await sleep(500);
    const t = `after-fuzz-${Date.now()}`;
    watcher.send(sa('uid-watcher', t));
    for (const c of fz) await c.waitFor((f) => f.some((x) => x.includes(t)), 5000, 'an event after the fuzz');
    assert.ok(fz.every((c) => !c.closed), 'the server closed a fuzzing client');
    const routed = await srv.metric('cot_events_received_total') - await srv.metric('cot_events_dropped_total', { reason: 'malformed' });
    assert.ok(routed > 300, `only ${routed} mutated events got past the scan: the fuzz is not reaching the router`);
    assert.ok(!srv.logs.some((l) => l.kind === 'internal'), 'an event raised an internal error');
    // close one fuzz client: its SA must leave the cache
    fz[0].close();
    await watcher.waitFor((f) => f.some((x) => x.includes('type="t-x-d-d"') && x.includes('link uid="fz-uid-1"')), 5000, 'delete of fz-uid-1');
    const n = await CotClient.connect(srv.port, await pki.client('echo'));
    open.push(n);
    await n.waitFor((f) => f.some((x) => x.includes('type="t-x-takp-v"')), 5000, 'announcement');
    const replay = n.frames.slice(0, n.frames.findIndex((x) => x.includes('type="t-x-takp-v"')));
    const live = new Set([...srv.server.router.sessions].map((s) => s.uid).filter(Boolean));
    for (const f of replay) {
      const h = scan(Buffer.from(f));
      assert.ok(h.ok, `replayed frame is not well-formed: ${f}`);
      assert.ok(live.has(h.uid), `replayed SA of ${h.uid}, which is not connected`);
      assert.ok(h.callsign !== undefined && h.endpoint !== undefined, 'replayed a non-SA');
      // valid by its own clock: stale after time (a device's clock may be off: README, SA cache)
      assert.ok(h.timeMs === h.timeMs ? h.staleMs > h.timeMs : !(h.staleMs <= Date.now()), 'replayed a stale SA');
      assert.ok(!f.includes('<marti'), 'replayed <marti>');
    }
    assert.ok(replay.some((f) => f.includes('uid="uid-watcher"')));
    assert.ok(!replay.some((f) => f.includes('uid="fz-uid-1"')));
  });
});
