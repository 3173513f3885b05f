// CoT times that are not in the usual form (the scan core reads that one itself).

/**
 * A CoT time as epoch ms: Date.parse(s), except that a date and time without a zone designator is
 * UTC. CoT times are UTC; Date.parse reads `2026-11-24T12:00:00` in the host's time zone, so the
 * same event went stale hours apart on servers in different zones. Not on the hot path: the
 * scan core reads the usual form itself, this is its fallback.
 */
export function cotTimeMs(s: string): number {
  const n = s.length;
  const sep = n >= 16 ? s.charCodeAt(10) : 0;
  if (sep === 0x54 || sep === 0x74 || sep === 0x20) { // T, t or a space: a date and a time
    // zoneless: after hh:mm only digits, ':' and '.' (a Z, an offset or a word end it otherwise)
    let i = 16;
    for (; i < n; i++) { const c = s.charCodeAt(i); if (!((c >= 0x30 && c <= 0x39) || c === 0x3a || c === 0x2e)) break; }
    if (i === n) return Date.parse(s + 'Z');
  }
  return Date.parse(s);
}
