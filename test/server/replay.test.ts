// The SA replay to a newcomer is paced by its socket (Session.replay): the t-x-takp-v that ends it
// is built when its turn comes. The real Router and Session over a stream that takes writes only
// when the test lets it, as a slow link would; pacing over real TLS is covered by
// e2e/flow-control.test.ts.
import assert from 'node:assert/strict';
import { FlushScheduler } from '../../src/session.ts';
import { Router } from '../../src/router.ts';
import { MemoryBus } from '../../src/bus/memory.ts';
import { EnvelopeKind } from '../../src/bus/types.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { createLogger } from '../../src/ops/log.ts';
import { memSession, WriteRecorder } from '../helpers/session.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** a stream whose writes complete only while it is open (a client reading, or not) */
class Valve extends WriteRecorder {
  readonly data: Buffer[] = [];
  private held: Array<() => void> = [];
  private isOpen = false;
  open(): void {
    this.isOpen = true;
    for (const cb of this.held.splice(0)) cb();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.data.push(chunk);
    if (this.isOpen) cb(); else this.held.push(cb);
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: () => void): void {
    for (const c of chunks) this.data.push(c.chunk);
    if (this.isOpen) cb(); else this.held.push(cb);
  }
}

describe('server: SA replay', function () {
  this.timeout(10000);

  it('a replay held up by a client that does not read ends with an announcement as fresh as the moment it is sent', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const sched = new FlushScheduler(m, 0);
    const router = new Router(new MemoryBus('here'), sched, m, createLogger('silent'), { announce: true });
    // 1.2 MB of SAs from clients of another node: many windows
    const until = Date.now() + 600_000;
    for (let i = 0; i < 20; i++) {
      const uid = `big-${i}`;
      const frame = Buffer.from(`<event version="2.0" uid="${uid}" type="a-f-G-U-C" how="m-g"><detail><contact callsign="B${i}" endpoint="*:-1:stcp"/><remarks>${'p'.repeat(60_000)}</remarks></detail></event>`);
      router.deliver({ kind: EnvelopeKind.sa, node: 'far', session: i + 1, seq: i + 1, uid, type: 'a-f-G-U-C', staleMs: until, callsigns: null, uids: null, frame, t0: 0 });
    }
    const valve = new Valve();
    const { s } = memSession(sched, m, router, undefined, valve);
    router.add(s);
    await sleep(1200);
    const text = () => Buffer.concat(valve.data).toString();
    assert.ok(!text().includes('t-x-takp-v'), 'nothing past the first window while the client does not read');
    // one 16-KiB window (here one 60-KB SA): what a TLS connection once had in flight stays with it
    // as native memory, so a window of 256 KiB cost every connected client that much
    assert.equal(valve.data.length, 1, 'one write');
    assert.ok(Buffer.concat(valve.data).length < 2 * 60_000, `${Buffer.concat(valve.data).length} bytes handed over before the client read`);
    const opened = Date.now();
    valve.open();
    for (let i = 0; i < 100 && !text().includes('t-x-takp-v'); i++) await sleep(20);
    const all = text();
    assert.equal(all.split('uid="big-').length - 1, 20, 'every SA');
    const ann = /<event[^>]*type="t-x-takp-v"[^>]*>/.exec(all)?.[0];
    assert.ok(ann, 'the announcement ends the replay');
    assert.ok(all.endsWith('</event>') && all.lastIndexOf('uid="big-') < all.indexOf(ann), 'after the SAs');
    const time = Date.parse(/ time="([^"]+)"/.exec(ann)![1]);
    const stale = Date.parse(/ stale="([^"]+)"/.exec(ann)![1]);
    // times are written to the millisecond
    assert.ok(time >= opened - 1, `announcement time ${time - opened} ms from the moment the client read again (built at connect: -1200)`);
    assert.equal(stale - time, 60_000);
    s.close('shutdown');
    router.close();
  });

  it('with no SAs cached the announcement is sent alone; with --no-announce nothing is sent', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const a = memSession(new FlushScheduler(m, 0), m, undefined, undefined, new Valve());
    const b = memSession(new FlushScheduler(m, 0), m, undefined, undefined, new Valve());
    a.s.replay([], true);
    b.s.replay([], false);
    await sleep(20);
    const sent = (v: WriteRecorder) => Buffer.concat((v as Valve).data).toString();
    assert.match(sent(a.rec), /^<event [^>]*type="t-x-takp-v"/);
    assert.equal(sent(b.rec), '');
    a.s.close('shutdown');
    b.s.close('shutdown');
  });
});
