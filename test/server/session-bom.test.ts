// A UTF-8 byte-order mark at the start of a client's stream (Windows PowerShell's UTF8 encoding,
// some .NET writers) is skipped as the encoding marker it is: the events after it go through and
// the operator gets no junk warning. Anywhere else the same bytes are junk, as any other bytes
// outside an event.
import assert from 'node:assert/strict';
import { FlushScheduler } from '../../src/session.ts';
import { Metrics } from '../../src/ops/metrics.ts';
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
