// Property tests (fast-check): the framer against any chunking, the scan's fields against
// fast-xml-parser, and the scan's accept/reject verdict against fast-xml-parser's XMLValidator
// (deliberate differences are listed in protocol/README.md and pinned down here).
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { Framer } from '../../protocol/framer.ts';
import { scan, ScanReason, type CotDest, type CotHeader } from '../../protocol/scan.ts';
import { numberOf } from '../../protocol/values.ts';
import { between, cotEvent } from '../helpers/cotgen.ts';
import { loadSamples } from '../helpers/samples.ts';

const RUNS = Number(process.env.FC_RUNS) || 300;
const samples = [...loadSamples().values()].map((b) => b.toString('utf8'));
const sampleEvent = (s: string) => s.slice(s.indexOf('<event'), s.lastIndexOf('</event>') + 8);

function frames(stream: Buffer, cuts: number[]): string[] {
  const out: string[] = [];
  const f = new Framer({ frame: (b) => out.push(b.toString('utf8')), reject: (r, d) => assert.fail(`${r}: ${d}`) });
  let p = 0;
  for (const c of [...new Set(cuts)].sort((a, b) => a - b)) {
    if (c > p && c < stream.length) { f.push(stream.subarray(p, c)); p = c; }
  }
  f.push(stream.subarray(p));
  assert.equal(f.buffered, 0);
  return out;
}

describe('property: framer', () => {
  const event = fc.oneof({ weight: 3, arbitrary: cotEvent }, { weight: 1, arbitrary: fc.constantFrom(...samples.map(sampleEvent)) });

  it('any chunking of a stream of events yields exactly the events, in order', () => {
    fc.assert(fc.property(fc.array(fc.tuple(between, event), { minLength: 1, maxLength: 8 }), between,
      fc.array(fc.nat(), { maxLength: 40 }), (evs, tail, rawCuts) => {
        const stream = Buffer.from(evs.map(([b, e]) => b + e).join('') + tail);
        const expected = evs.map(([, e]) => e);
        assert.deepEqual(frames(stream, []), expected);
        assert.deepEqual(frames(stream, rawCuts.map((c) => c % (stream.length + 1))), expected);
      }), { numRuns: RUNS });
  });

  it('the samples as sent, byte by byte and in random chunks', () => {
    const stream = Buffer.from(samples.join(''));
    const expected = samples.map(sampleEvent);
    assert.deepEqual(frames(stream, Array.from({ length: stream.length }, (_, i) => i)), expected);
    fc.assert(fc.property(fc.array(fc.nat(stream.length), { maxLength: 60 }), (cuts) => {
      assert.deepEqual(frames(stream, cuts), expected);
    }), { numRuns: RUNS });
  });

  it('junk between events is skipped and counted the same way under any chunking', () => {
    const junk = fc.string({ unit: fc.constantFrom(...'abc <>/!?"\'=&\n'.split('')), maxLength: 30 })
      .filter((j) => !j.includes('<event') && !/<(!|\?)/.test(j));
    fc.assert(fc.property(fc.array(fc.tuple(junk, cotEvent), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 30 }), (parts, cuts) => {
      const stream = Buffer.from(parts.map(([j, e]) => `${j}\n${e}`).join(''));
      const run = (cs: number[]) => {
        const out: string[] = [];
        const f = new Framer({ frame: (b) => out.push(b.toString()), reject: () => {} });
        let p = 0;
        for (const c of [...new Set(cs.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b)) {
          if (c > p) { f.push(stream.subarray(p, c)); p = c; }
        }
        f.push(stream.subarray(p));
        return { out, skipped: f.skippedBytes, ignored: f.ignoredBytes, framed: f.framedBytes, buffered: f.buffered };
      };
      const whole = run([]);
      assert.deepEqual(run(cuts), whole);
      assert.equal(whole.skipped + whole.ignored + whole.framed + whole.buffered, stream.length);
      // every event survives junk that holds no "<event" (a junk '<' right before it may not merge)
      for (const [, e] of parts) assert.ok(whole.out.includes(e) || whole.out.some((o) => o.endsWith(e)), e);
    }), { numRuns: RUNS });
  });
});

// ---- fields vs fast-xml-parser ------------------------------------------------------------------

const ARRAYS = new Set(['event.point', 'event.detail', 'event.detail.contact', 'event.detail.__group',
  'event.detail.marti', 'event.detail.marti.dest', 'event.detail.link']);
const fxp = new XMLParser({
  ignoreAttributes: false, attributeNamePrefix: '', parseAttributeValue: false, parseTagValue: false,
  trimValues: false, processEntities: true, htmlEntities: true,
  isArray: (_name: string, jpath: unknown, _leaf: boolean, isAttribute: boolean) => !isAttribute && ARRAYS.has(String(jpath)),
});
type Obj = Record<string, unknown>;
const obj = (x: unknown): Obj => (typeof x === 'object' && x !== null ? x as Obj : {});
const list = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);
const str = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined);

/** The header fields as fast-xml-parser reads them from the same frame. */
function fxpHeader(xml: string) {
  const ev = obj(fxp.parse(xml).event);
  const details = list(ev.detail).map(obj);
  const first = (name: string) => { for (const d of details) { const a = list(d[name]); if (a.length) return obj(a[0]); } return undefined; };
  const contact = first('contact');
  const group = first('__group');
  const link = first('link');
  const dests: CotDest[] = [];
  for (const d of details) {
    for (const m of list(d.marti)) {
      for (const x of list(obj(m).dest)) {
        const o = obj(x);
        const dest: CotDest = {};
        if (str(o.callsign) !== undefined) dest.callsign = str(o.callsign);
        if (str(o.uid) !== undefined) dest.uid = str(o.uid);
        dests.push(dest);
      }
    }
  }
  const points = list(ev.point);
  const p = points.length ? obj(points[0]) : undefined;
  const coord = (k: string) => { const v = str(p?.[k]); return v === undefined ? NaN : numberOf(v); };
  return {
    uid: str(ev.uid), type: str(ev.type), how: str(ev.how), time: str(ev.time), start: str(ev.start),
    stale: str(ev.stale), version: str(ev.version),
    point: p === undefined ? undefined : { lat: coord('lat'), lon: coord('lon'), hae: coord('hae'), ce: coord('ce'), le: coord('le') },
    callsign: str(contact?.callsign), endpoint: str(contact?.endpoint),
    groupName: str(group?.name), groupRole: str(group?.role),
    dests, hasLink: link !== undefined, linkUid: str(link?.uid),
  };
}

function ours(h: CotHeader) {
  return {
    uid: h.uid, type: h.type, how: h.how, time: h.time, start: h.start, stale: h.stale, version: h.version,
    point: h.point, callsign: h.callsign, endpoint: h.endpoint, groupName: h.groupName, groupRole: h.groupRole,
    dests: h.dests, hasLink: h.hasLink, linkUid: h.linkUid,
  };
}

describe('property: scan reads what fast-xml-parser reads', () => {
  it('every generated event and every sample', () => {
    const check = (xml: string) => {
      const h = scan(Buffer.from(xml));
      if (!h.ok) assert.fail(`rejected (${h.reason} at ${h.offset}): ${xml}`);
      assert.deepEqual(ours(h), fxpHeader(xml));
      assert.equal(h.staleMs, h.stale === undefined ? NaN : Date.parse(h.stale));
      assert.equal(h.control, h.type.startsWith('t-x-c-') || h.type.startsWith('t-x-takp-'));
      if (h.martiStart >= 0) {
        const m = Buffer.from(xml).subarray(h.martiStart, h.martiEnd).toString();
        assert.match(m, /^<marti[\s\S]*(\/>|<\/marti\s*>)$/);
      }
    };
    for (const s of samples) check(s);
    fc.assert(fc.property(cotEvent, check), { numRuns: RUNS * 3 });
  });
});

// ---- accept/reject vs XMLValidator ----------------------------------------------------------------

/** Reasons for which the scan is deliberately stricter than XMLValidator (protocol/README.md). */
const STRICTER = new Set<string>([
  ScanReason.notEvent, ScanReason.noUid, ScanReason.noType, ScanReason.nestedEvent, ScanReason.endTagInMarkup, // CoT, not XML
  ScanReason.attrLt, ScanReason.char, ScanReason.reference, ScanReason.cdataEnd, ScanReason.comment,
  ScanReason.trailing, ScanReason.xmlDecl, ScanReason.doctype, ScanReason.pi,
  // XMLValidator lets these malformed tags through
  ScanReason.attrSpace, ScanReason.attrName, ScanReason.tagUnterminated, ScanReason.endTag,
]);

/** XMLValidator's name check knows no characters beyond the BMP letters (it refuses e.g. U+1F600,
 *  an XML 1.0 name character); the scan accepts any non-ASCII character in names. */
function validatorNameQuirk(xml: string): boolean {
  const v = XMLValidator.validate(xml);
  return v !== true && /invalid name/.test(v.err.msg) && /[^\x00-\x7f]/.test(xml);
}

const mutation = fc.tuple(
  fc.constantFrom('delete', 'insert', 'replace', 'duplicate', 'truncate', 'swap'),
  fc.nat(), fc.nat(), fc.constantFrom(...'<>/="\'&!?-[];# x\u0001éa'.split(''), ']]>', '<!--', '-->', '</a>', '<b>', '&amp;', '&#0;', '&foo;'),
);
function mutate(s: string, [op, i0, j0, ins]: [string, number, number, string]): string {
  const i = i0 % (s.length + 1);
  const j = i + (j0 % 12);
  switch (op) {
    case 'delete': return s.slice(0, i) + s.slice(i + 1 + (j0 % 3));
    case 'insert': return s.slice(0, i) + ins + s.slice(i);
    case 'replace': return s.slice(0, i) + ins + s.slice(i + 1);
    case 'duplicate': return s.slice(0, j) + s.slice(i, j) + s.slice(j);
    case 'truncate': return s.slice(0, i);
    default: return s.slice(0, i) + s.slice(j, j + 3) + s.slice(i + 3, j) + s.slice(i, i + 3) + s.slice(j + 3);
  }
}

describe('property: accept/reject agrees with XMLValidator on mutated events', () => {
  it('accepted by the scan => accepted by XMLValidator; rejected only by the scan => a documented stricter rule', () => {
    const tally = new Map<string, number>();
    let agree = 0;
    let total = 0;
    fc.assert(fc.property(fc.oneof(cotEvent, fc.constantFrom(...samples.map(sampleEvent))), fc.array(mutation, { minLength: 1, maxLength: 3 }), (ev, muts) => {
      const xml = muts.reduce(mutate, ev);
      const h = scan(Buffer.from(xml));
      const v = XMLValidator.validate(xml) === true;
      total++;
      if (h.ok === v) { agree++; return; }
      if (h.ok && validatorNameQuirk(xml)) return;
      if (h.ok) assert.fail(`scan accepts what XMLValidator rejects: ${JSON.stringify(XMLValidator.validate(xml))}\n${xml}`);
      const reason = (h as { reason: string }).reason;
      tally.set(reason, (tally.get(reason) ?? 0) + 1);
      assert.ok(STRICTER.has(reason), `scan rejects (${reason}) what XMLValidator accepts:\n${xml}`);
    }), { numRuns: RUNS * 5 });
    assert.ok(agree / total > 0.8, `verdicts agree on ${agree}/${total}`);
  });

  it('each deliberate difference, pinned', () => {
    const ev = (inner: string, attrs = 'uid="u" type="t"') => `<event ${attrs}>${inner}</event>`;
    const stricter: [string, string][] = [
      [ev('<a b="<"/>'), ScanReason.attrLt],
      [ev('<a>\u0001</a>'), ScanReason.char],
      [ev('<a b="&nbsp;"/>'), ScanReason.reference],
      [ev('<a b="a & b"/>'), ScanReason.reference],
      [ev('<a>&#0;</a>'), ScanReason.reference],
      [ev('<a>]]></a>'), ScanReason.cdataEnd],
      [ev('<!-- a -- b -->'), ScanReason.comment],
      ['<event uid="u" type="t"/>x', ScanReason.trailing],
      [ev("<a b='1'= c='2'/>"), ScanReason.attrSpace],
      [ev('<a = b="1"/>'), ScanReason.attrName],
      ['<event uid="u" type="t" /', ScanReason.tagUnterminated],
      [ev('<a/></ev\t/>'), ScanReason.endTag],
      [ev('<?xml version="1.0"?>'), ScanReason.xmlDecl],
      ['<!DOCTYPE event><event uid="u" type="t"/>', ScanReason.doctype],
      ['<foo uid="u" type="t"/>', ScanReason.notEvent],
      [ev('', 'type="t"'), ScanReason.noUid],
      [ev('<!-- </event> -->'), ScanReason.endTagInMarkup],
    ];
    for (const [xml, reason] of stricter) {
      assert.equal(XMLValidator.validate(xml), true, xml);
      const h = scan(Buffer.from(xml));
      assert.equal(h.ok ? 'ok' : h.reason, reason, xml);
    }
    // and the other way round: a name XML allows and XMLValidator refuses
    const astral = ev('<a\u{1F600}/>');
    assert.ok(validatorNameQuirk(astral));
    assert.ok(scan(Buffer.from(astral)).ok);
  });
});
