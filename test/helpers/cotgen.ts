// fast-check generators of CoT events as devices write them: attributes in any order and either
// quote style, entity and character references, UTF-8, white space, comments and CDATA between
// elements (some holding an end tag), unknown elements, several dests, point before or after detail.
import fc from 'fast-check';

const ws = fc.constantFrom('', '', ' ', '\n', '\n  ', '\t', '\r\n\t');
const sep = fc.constantFrom(' ', ' ', '\n', '\t', '  ', '\r\n ');

/** One attribute value, written for the given quote (the decoded value is what a parser returns). */
function value(quote: '"' | "'"): fc.Arbitrary<string> {
  const other = quote === '"' ? "'" : '"';
  const piece = fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: fc.constantFrom(...'abcdefXYZ0123456789 -_.:/,;!?()[]{}*+=@#$%^~|`>'.split('')), maxLength: 12 }) },
    { weight: 1, arbitrary: fc.constantFrom('&amp;', '&lt;', '&gt;', '&quot;', '&apos;', other) },
    { weight: 1, arbitrary: fc.oneof(
      fc.integer({ min: 0x20, max: 0xd7ff }),
      fc.integer({ min: 0xe000, max: 0xfffd }),
      fc.integer({ min: 0x10000, max: 0x10ffff }),
      fc.constantFrom(9, 10, 13),
    ).chain((cp) => fc.constantFrom(`&#${cp};`, `&#x${cp.toString(16)};`, `&#x${cp.toString(16).toUpperCase()};`)) },
    { weight: 1, arbitrary: fc.constantFrom('é', 'ß', '北京', '😀', 'Ω', 'Zoë') },
  );
  return fc.array(piece, { maxLength: 5 }).map((a) => a.join(''));
}

/** ` name="value"` pairs for the given names, in random order with random quotes/white space. */
function attrs(names: string[], required: string[] = [], nonEmpty: string[] = []): fc.Arbitrary<string> {
  const optional = names.filter((n) => !required.includes(n));
  return fc.subarray(optional).chain((picked) => {
    const all = [...required, ...picked];
    return fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length }).chain((order) =>
      fc.tuple(...order.map((name) => fc.constantFrom<'"' | "'">('"', "'").chain((q) =>
        fc.tuple(sep, value(q).filter((v) => !nonEmpty.includes(name) || v.length > 0), ws, ws)
          .map(([s, v, w1, w2]) => `${s}${name}${w1}=${w2}${q}${v}${q}`))))
        .map((parts) => parts.join('')));
  });
}

const num = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
  fc.integer({ min: -180, max: 180 }).chain((i) => fc.nat(99999999).map((f) => `${i}.${f}`)),
  fc.constantFrom('0', '9999999.0', '-0.5', '', '1e3', 'abc'),
);
const point = fc.tuple(fc.subarray(['lat', 'lon', 'hae', 'ce', 'le']), ws).chain(([names, w]) =>
  fc.tuple(...names.map((n) => fc.tuple(fc.constantFrom('"', "'"), num).map(([q, v]) => ` ${n}=${q}${v}${q}`)))
    .map((parts) => `<point${parts.join('')}${w}/>`));

// end tags inside comments and CDATA must not end the frame; the exact bytes "</event>" there are
// refused by the scan (TAK clients cut their stream at them), so these spell it with white space
const comment = fc.constantFrom('<!-- c -->', '<!-- </event > -->', '<!---->', '<!-- <event uid="x" type="y"> -->');
const cdata = fc.constantFrom('<![CDATA[]]>', '<![CDATA[ </event\t> <x> & ]]>', '<![CDATA[]]]]>');
const text = fc.string({ unit: fc.constantFrom(...'abc XYZ 123 .,;:-_>'.split('')), maxLength: 10 })
  .chain((t) => fc.constantFrom(t, `${t}&amp;${t}`, `${t}&#x263A;`));

const unknownName = fc.constantFrom('takv', 'status', 'track', 'remarks', '__chat', 'uid', 'precisionlocation', 'x:y', 'a-b.c');
const unknownAttr = ['callsign', 'uid', 'name', 'role', 'version', 'os', 'a', 'b-c', 'x:d'];

function unknownElement(depth: number): fc.Arbitrary<string> {
  return fc.tuple(unknownName, attrs(unknownAttr), ws).chain(([name, a, w]) => {
    const body: fc.Arbitrary<string> = depth > 0
      ? fc.array(fc.oneof(text, comment, cdata, unknownElement(depth - 1)), { maxLength: 3 }).map((x) => x.join(''))
      : fc.oneof(text, cdata, comment);
    return fc.oneof(fc.constant(`<${name}${a}${w}/>`), body.map((b) => `<${name}${a}${w}>${b}</${name}${w}>`));
  });
}

const dest = attrs(['callsign', 'uid']).map((a) => `<dest${a}/>`);
const marti = fc.tuple(fc.array(fc.tuple(ws, dest), { maxLength: 3 }), ws).map(([ds, w]) =>
  ds.length === 0 ? '<marti/>' : `<marti>${ds.map(([a, d]) => a + d).join('')}${w}</marti>`);
const detailChild = fc.oneof(
  attrs(['callsign', 'endpoint', 'phone']).map((a) => `<contact${a}/>`),
  attrs(['name', 'role']).map((a) => `<__group${a}/>`),
  marti,
  attrs(['uid', 'relation', 'type']).map((a) => `<link${a}/>`),
  unknownElement(2),
  comment,
);
const detail = fc.tuple(fc.array(fc.tuple(ws, detailChild), { maxLength: 6 }), ws).map(([cs, w]) =>
  cs.length === 0 ? '<detail/>' : `<detail>${cs.map(([a, c]) => a + c).join('')}${w}</detail>`);

/** One well-formed CoT event (no declaration). */
export const cotEvent: fc.Arbitrary<string> = fc.tuple(
  attrs(['uid', 'type', 'how', 'time', 'start', 'stale', 'version', 'access', 'qos'], ['uid', 'type'], ['uid', 'type']),
  fc.array(fc.tuple(ws, fc.oneof(point, detail, comment)), { maxLength: 3 }),
  ws, ws, fc.boolean(),
).map(([a, children, w1, w2, selfClose]) =>
  selfClose && children.length === 0 ? `<event${a}${w1}/>` : `<event${a}${w1}>${children.map(([s, c]) => s + c).join('')}${w2}</event>`);

/** What may sit between events on the wire. */
export const between = fc.constantFrom('', '\n', '\r\n', ' \t ', '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n',
  "<?xml version='1.0'?>", '<!-- keepalive -->', '\n\n<?xml version="1.0"?>\n\t');
