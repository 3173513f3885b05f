// A bug in the framer or the scan core must cost the client whose bytes triggered it, nothing
// else: the exception is contained in that session (counted, logged once with the client's
// identity, the client disconnected) and every other session goes on. The fault is injected into
// one session's framer; the sessions, scheduler, metrics and logger are the real ones.
import assert from 'node:assert/strict';
import { FlushScheduler, type Session } from '../../src/session.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { metricValue } from '../helpers/server.ts';
import { capturedLogger, memSession } from '../helpers/session.ts';

const SA = Buffer.from('<event version="2.0" uid="u-1" type="a-f-G-U-C" how="m-g" time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z" stale="2026-01-01T00:05:00Z"><point lat="1" lon="2" hae="0" ce="1" le="1"/><detail><contact callsign="A"/></detail></event>');

describe('server: a failure inside the stream parser', () => {
  it('disconnects only that client, counted and logged once with its identity', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const sched = new FlushScheduler(m);
    const { log, lines } = capturedLogger();
    const frames: string[] = [];
    const closed: string[] = [];
    const host = { onFrame: (s: Session) => { frames.push(String(s.id)); }, onClose: (s: Session, reason: string) => { closed.push(`${s.id}:${reason}`); } };
    const bad = memSession(sched, m, host, log);
    const good = memSession(sched, m, host, log);
    // fault injection: this session's framer throws as a bug in it would
    (bad.s as unknown as { framer: { push(b: Buffer): void } }).framer.push = () => { throw new Error('injected framer bug'); };

    bad.rec.push(SA);
    good.rec.push(SA);
    await new Promise((r) => setImmediate(r));

    assert.deepEqual(closed, [`${bad.s.id}:error`], 'the offender is disconnected, nobody else');
    assert.equal(bad.s.closed, true);
    assert.equal(good.s.closed, false);
    assert.deepEqual(frames, [String(good.s.id)], 'the other client\'s event still went through');
    const errs = lines.filter((l) => l.kind === 'internal');
    assert.equal(errs.length, 1);
    assert.equal(errs[0].audit, 'bad_input');
    assert.equal(errs[0].cn, 'alpha');
    assert.equal(errs[0].sid, bad.s.id);
    assert.match(String(errs[0].err), /injected framer bug/);
    assert.equal(metricValue(await m.registry.metrics(), 'cot_events_dropped_total', { reason: 'malformed' }), 1);

    // more bytes from a closed session are ignored, the other one keeps working
    bad.rec.push(SA);
    good.rec.push(SA);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(frames, [String(good.s.id), String(good.s.id)]);
    assert.equal(lines.filter((l) => l.kind === 'internal').length, 1);
    good.s.close('shutdown');
  });
});
