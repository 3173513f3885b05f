// Building XML safely: attribute values for the server's control messages (pong, takp, t-x-d-d).

const SPECIAL = /[&<>"'\u0000-\u001f\ud800-\udfff\ufffe\uffff]/;

/** Escapes a string for use inside a quoted XML attribute value (either quote style). Tab, LF and
 *  CR become character references so a parser's attribute normalisation keeps them; characters
 *  XML 1.0 cannot carry at all (other C0 controls, lone surrogates, U+FFFE/U+FFFF) become U+FFFD. */
export function escapeAttr(s: string): string {
  if (!SPECIAL.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    switch (c) {
      case 0x26: out += '&amp;'; continue;
      case 0x3c: out += '&lt;'; continue;
      case 0x3e: out += '&gt;'; continue;
      case 0x22: out += '&quot;'; continue;
      case 0x27: out += '&apos;'; continue;
      case 0x09: out += '&#9;'; continue;
      case 0x0a: out += '&#10;'; continue;
      case 0x0d: out += '&#13;'; continue;
    }
    if (c < 0x20 || c === 0xfffe || c === 0xffff) { out += '\ufffd'; continue; }
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) { out += s[i] + s[i + 1]; i++; continue; }
      out += '\ufffd';
      continue;
    }
    if (c >= 0xdc00 && c <= 0xdfff) { out += '\ufffd'; continue; }
    out += s[i];
  }
  return out;
}

const END_TAG = Buffer.from('</event>');

/**
 * A frame the scan accepted, as TAK clients find events in a stream. They cut the stream at the
 * bytes "</event>" (ATAK's commo, node-tak, pytak): an event closed as `<event …/>` or with
 * `</event >` would run into the next one for them, and both would be lost. node-tak finds the
 * start with /<event[ >]/: an event beginning `<event\n` or `<event\t` went by unseen.
 * The scan guarantees the frame starts with `<event` and white space (it has attributes) and
 * ends with `/>` (a self-closing root) or `</event` + white space + `>`, so two bytes tell the
 * usual frame apart. The caller owns `frame`: the white space after `<event` is made a space in
 * place; a frame ending otherwise is copied with its end rewritten.
 */
export function streamable(frame: Buffer): Buffer {
  if (frame[6] !== 0x20) frame[6] = 0x20;
  const n = frame.length;
  if (frame[n - 2] === 0x74 /* t */) return frame;
  // `<event …/>` keeps its attributes: `<event …>` + `</event>`; `</event \n>` loses its white space
  const selfClosing = frame[n - 2] === 0x2f; /* / */
  const keep = selfClosing ? n - 2 : frame.lastIndexOf(0x3c /* < */);
  const out = Buffer.allocUnsafe(keep + (selfClosing ? 1 : 0) + END_TAG.length);
  let o = frame.copy(out, 0, 0, keep);
  if (selfClosing) out[o++] = 0x3e; /* > */
  END_TAG.copy(out, o);
  return out;
}
