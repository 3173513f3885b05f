// Events declared in a single-byte Western encoding (`<?xml … encoding="ISO-8859-1"?>`, as some
// older CoT writers send): converted to UTF-8, the only encoding TAK clients read. Never on the hot
// path: only an event that failed as invalid UTF-8 is looked at (Session.frame), so a stream in
// UTF-8 pays nothing. Every label of these encodings means windows-1252 here, as in browsers
// (WHATWG Encoding): nobody writes the C1 controls of true ISO-8859-1 in 0x80-0x9F.

/** the encoding labels treated as windows-1252 (WHATWG's list for it, lower case) */
const WINDOWS_1252 = new Set([
  'ansi_x3.4-1968', 'ascii', 'cp1252', 'cp819', 'csisolatin1', 'ibm819', 'iso-8859-1', 'iso-ir-100',
  'iso8859-1', 'iso88591', 'iso_8859-1', 'iso_8859-1:1987', 'l1', 'latin1', 'us-ascii', 'windows-1252',
  'x-cp1252', 'latin-1',
]);

/** a declaration is short; further back than this is not "right before the event" */
const LOOK_BACK = 512;
const DECL_OPEN = Buffer.from('<?xml');

/**
 * The encoding named by an XML declaration that ends right before b[at] (white space allowed in
 * between), lower-cased; undefined when there is none or it names no encoding.
 */
export function declaredEncoding(b: Buffer, at: number): string | undefined {
  let e = at;
  while (e > 0 && (b[e - 1] === 0x20 || b[e - 1] === 0x0a || b[e - 1] === 0x0d || b[e - 1] === 0x09)) e--;
  if (e < 2 || b[e - 1] !== 0x3e /* > */ || b[e - 2] !== 0x3f /* ? */) return undefined;
  const s = b.lastIndexOf(DECL_OPEN, e - 2);
  if (s < 0 || e - s > LOOK_BACK) return undefined;
  const m = /\sencoding\s*=\s*(?:"([^"]*)"|'([^']*)')/.exec(b.toString('latin1', s, e));
  return m ? (m[1] ?? m[2]).trim().toLowerCase() : undefined;
}

/** true for the labels of ISO-8859-1 / windows-1252 (and US-ASCII, its subset) */
export function isWestern(label: string): boolean {
  return WINDOWS_1252.has(label);
}

// windows-1252 0x80-0x9F; the five it leaves undefined map to the C1 control of the same value
const HIGH = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
];

/** windows-1252 bytes as UTF-8 */
export function windows1252ToUtf8(b: Buffer): Buffer {
  let s = '';
  let from = 0;
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c < 0x80 || c > 0x9f) continue;
    s += b.toString('latin1', from, i) + String.fromCharCode(HIGH[c - 0x80]);
    from = i + 1;
  }
  return Buffer.from(s + b.toString('latin1', from), 'utf8');
}
