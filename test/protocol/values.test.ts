import assert from 'node:assert/strict';
import fc from 'fast-check';
import { numberOf, parseDecimal, parseIsoMs } from '../../protocol/values.ts';
import { cotTimeMs } from '../../protocol/time.ts';
import { eventTimeMs, scan, type CotHeader } from '../../protocol/scan.ts';

const num = (s: string) => parseDecimal(Buffer.from(s, 'latin1'), 0, s.length);
const iso = (s: string) => parseIsoMs(Buffer.from(s, 'latin1'), 0, s.length);
const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

describe('values read from bytes', () => {
  it('parseDecimal equals Number() (empty and blank are NaN)', () => {
    for (const s of ['0', '-0', '+5', '50.123', '-115.471535', '77.8140859592704', '9999999.0', '38.85606343062312',
      '.5', '5.', '.', '-', '', ' ', '1e5', '0x10', '12abc', '00012.50', '123456789012345678901234', '0.000000000000000000000001', 'NaN', 'Infinity']) {
      assert.ok(same(num(s), numberOf(s)), s);
    }
    assert.ok(Number.isNaN(num('')));
    assert.ok(Number.isNaN(num('  ')));
  });

  it('parseDecimal equals Number() for any decimal text', () => {
    const digits = fc.string({ unit: fc.constantFrom('0', '1', '2', '3', '4', '5', '6', '7', '8', '9'), maxLength: 25 });
    fc.assert(fc.property(fc.constantFrom('', '-', '+'), digits, fc.boolean(), digits, (sign, a, dot, b) => {
      const s = sign + a + (dot ? '.' : '') + b;
      assert.ok(same(num(s), numberOf(s)), s);
    }), { numRuns: 5000 });
    fc.assert(fc.property(fc.double(), (d) => {
      const s = String(d);
      assert.ok(same(num(s), numberOf(s)), s);
    }), { numRuns: 2000 });
  });

  it('parseIsoMs equals Date.parse() for CoT times and anything near them', () => {
    for (const s of ['2020-08-19T08:07:47.157Z', '2021-04-20T15:14:08Z', '2012-01-01T00:00:00Z', '2020-02-29T23:59:59.9Z',
      '2021-02-29T00:00:00Z', '2020-13-01T00:00:00Z', '2020-08-19T24:00:00Z', '2020-08-19T08:07:47.1579Z', 'TIME', '',
      '2020-08-19T08:07:47.157', '2020-08-19 08:07:47Z', '1969-12-31T23:59:59.999Z', '0000-01-01T00:00:00Z']) {
      assert.ok(same(iso(s), Date.parse(s)), s);
    }
    fc.assert(fc.property(fc.date({ min: new Date(-62167219200000), max: new Date(253402300799999), noInvalidDate: true }), fc.integer({ min: 0, max: 9 }), (d, frac) => {
      let s = d.toISOString();
      // beyond milliseconds (WinTAK's .NET writes 7 digits, some 9): digits Date.parse cuts
      s = frac === 0 ? s.slice(0, 19) + 'Z' : frac <= 3 ? s.slice(0, 20 + frac) + 'Z' : s.slice(0, 23) + '987654'.slice(0, frac - 3) + 'Z';
      assert.ok(same(iso(s), Date.parse(s)), s);
    }), { numRuns: 5000 });
  });

  it('a CoT time without a zone is UTC whatever the host\'s time zone (Date.parse would read it as local time)', () => {
    const tz = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      assert.notEqual(Date.parse('2026-11-24T12:00:00'), Date.UTC(2026, 10, 24, 12), 'the zone change took no effect');
      assert.equal(cotTimeMs('2026-11-24T12:00:00'), Date.UTC(2026, 10, 24, 12));
      assert.equal(cotTimeMs('2026-11-24T12:00:00.1234'), Date.UTC(2026, 10, 24, 12, 0, 0, 123));
      assert.equal(cotTimeMs('2026-11-24 12:00'), Date.UTC(2026, 10, 24, 12));
      assert.equal(iso('2026-11-24T12:00:00.5'), Date.UTC(2026, 10, 24, 12, 0, 0, 500));
      // with a zone, or not a date and time: exactly Date.parse
      for (const s of ['2026-11-24T12:00:00Z', '2026-11-24T12:00:00+02:00', '2026-11-24T12:00:00.5-05:00', '2026-11-24', 'TIME', ''])
        assert.ok(same(cotTimeMs(s), Date.parse(s)), s);
      const h = scan(Buffer.from('<event version="2.0" uid="u" type="a-f-G" time="2026-11-24T11:55:00" start="2026-11-24T11:55:00" stale="2026-11-24T12:00:00.25"/>')) as CotHeader;
      assert.equal(h.timeMs, Date.UTC(2026, 10, 24, 11, 55));
      assert.equal(h.staleMs, Date.UTC(2026, 10, 24, 12, 0, 0, 250));
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });

  it('eventTimeMs: the time of an event\'s start tag, in either quotes; never another element\'s or a lookalike attribute', () => {
    const t = Date.UTC(2026, 10, 24, 12);
    assert.equal(eventTimeMs(Buffer.from('<?xml version="1.0"?><event version="2.0" uid="u" type="a-f-G" time="2026-11-24T12:00:00Z" stale="x"><detail/></event>')), t);
    assert.equal(eventTimeMs(Buffer.from("<event uid='u' type='a'\ttime = '2026-11-24T12:00:00.000Z'/>")), t);
    assert.ok(Number.isNaN(eventTimeMs(Buffer.from('<event uid="u" type="a" starttime="2026-11-24T12:00:00Z"><detail time="2026-11-24T12:00:00Z"/></event>'))));
    assert.ok(Number.isNaN(eventTimeMs(Buffer.from('<event uid="u" type="a" time="soon"/>'))));
    assert.ok(Number.isNaN(eventTimeMs(Buffer.from('no event'))));
  });
});
