// How a session reads the encoding of a client's stream.
// A UTF-8 byte-order mark at the start of a client's stream (Windows PowerShell's UTF8 encoding,
// some .NET writers) is skipped as the encoding marker it is: the events after it go through and
// the operator gets no junk warning. Anywhere else the same bytes are junk, as any other bytes
// outside an event.
import assert from 'node:assert/strict';
import { FlushScheduler } from '../../src/session.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { encodeStreamMessage } from '../../protocol/takproto.ts';
import { metricValue } from '../helpers/server.ts';
import { capturedLogger, memSession } from '../helpers/session.ts';

const SA = Buffer.from('<event version="2.0" uid="u-1" type="a-f-G-U-C" how="m-g" time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z" stale="2026-01-01T00:05:00Z"><point lat="1" lon="2" hae="0" ce="1" le="1"/><detail><contact callsign="A"/></detail></event>');
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const tick = () => new Promise((r) => setImmediate(r));

describe('server: a byte-order mark opening the stream', () => {
  it('is skipped silently; the same bytes later in the stream are junk', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const { log, lines } = capturedLogger();
    let frames = 0;
    const { s, rec } = memSession(new FlushScheduler(m), m, { onFrame: () => { frames++; }, onClose: () => {} }, log);
    rec.push(Buffer.concat([BOM, SA]));
    await tick();
    assert.equal(frames, 1);
    assert.equal(metricValue(await m.registry.metrics(), 'cot_junk_bytes_total'), 0);
    assert.equal(lines.filter((l) => l.kind === 'junk').length, 0, 'no junk warning');
    rec.push(Buffer.concat([BOM, SA]));
    await tick();
    assert.equal(frames, 2);
    assert.equal(metricValue(await m.registry.metrics(), 'cot_junk_bytes_total'), 3, 'not at the start: junk');
    assert.equal(lines.filter((l) => l.kind === 'junk').length, 1);
    s.close('shutdown');
  });
});

describe('server: a byte-order mark, then a switch to TAK protobuf', () => {
  const REQ = Buffer.from('<event version="2.0" uid="q-1" type="t-x-takp-q" how="m-g" time="2026-01-01T00:00:00Z" start="2026-01-01T00:00:00Z" stale="2026-01-01T00:01:00Z"><point lat="0" lon="0" hae="0" ce="9999999" le="9999999"/><detail><TakControl><TakRequest version="1"/></TakControl></detail></event>');
  const after = encodeStreamMessage(SA)!;
  // the request and the first protobuf message in one read, and apart: the switch must happen where
  // the request ended, though the mark before it never reached the XML framer
  for (const oneRead of [true, false]) {
    it(`reads the protobuf after the request (${oneRead ? 'one read' : 'two reads'})`, async () => {
      const m = new Metrics({ defaultMetrics: false });
      const types: string[] = [];
      let closed = '';
      const { s, rec } = memSession(new FlushScheduler(m), m, {
        onFrame: (sess, _f, h) => { types.push(h.type); if (h.type === 't-x-takp-q') sess.useProtobuf(); },
        onClose: (_s, why) => { closed = why; },
      });
      if (oneRead) rec.push(Buffer.concat([BOM, REQ, after]));
      else { rec.push(Buffer.concat([BOM, REQ])); await tick(); rec.push(after); }
      await tick();
      assert.deepEqual(types, ['t-x-takp-q', 'a-f-G-U-C']);
      assert.equal(closed, '', 'the session stays open');
      s.close('shutdown');
    });
  }
});

describe('server: an event declared ISO-8859-1, cut across reads', () => {
  // an older CoT writer: its declaration, then the event in windows-1252, the first of the stream
  const decl = Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?>\n');
  const ev = Buffer.from(SA.toString('latin1').replace('callsign="A"', 'callsign="Jos\u00e9 \u00c0"'), 'latin1');
  // (a read that ends inside the declaration itself is not covered: the event is refused then)
  for (const cut of [0, decl.length - 1, decl.length, decl.length + 20, decl.length + 100, decl.length + ev.length - 3]) {
    it(`is converted to UTF-8 (${cut === 0 ? 'one read' : `cut after ${cut} bytes`})`, async () => {
      const m = new Metrics({ defaultMetrics: false });
      const frames: string[] = [];
      const { s, rec } = memSession(new FlushScheduler(m), m, { onFrame: (_s, f) => { frames.push(f.toString('utf8')); }, onClose: () => {} });
      const wire = Buffer.concat([decl, ev]);
      if (cut === 0) rec.push(wire);
      else { rec.push(wire.subarray(0, cut)); await tick(); rec.push(wire.subarray(cut)); }
      await tick();
      assert.equal(frames.length, 1, 'delivered, not refused as invalid UTF-8');
      assert.match(frames[0], /callsign="José À"/);
      s.close('shutdown');
    });
  }
});
