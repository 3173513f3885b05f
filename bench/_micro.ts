import { Framer } from '../protocol/framer.ts';
import { scan } from '../protocol/scan.ts';
import { readFileSync } from 'node:fs';
const sa = readFileSync('protocol/samples/01-sa-atak-civ-4.0-streaming.xml');
const parts: Buffer[] = []; for (let i = 0; i < 1549; i++) parts.push(sa);
const stream = Buffer.concat(parts);
const chunks: Buffer[] = []; for (let p = 0; p < stream.length; p += 16384) chunks.push(stream.subarray(p, p + 16384));
const frames: Buffer[] = [];
{ const f = new Framer({ frame: (b) => frames.push(Buffer.from(b)), reject: () => {} }); for (const c of chunks) f.push(c); }
function bench(name: string, fn: () => void) {
  for (let i = 0; i < 200; i++) fn();
  const t0 = performance.now(); let k = 0;
  while (performance.now() - t0 < 2000) { fn(); k++; }
  const s = (performance.now() - t0) / 1000;
  console.log(name, Math.round(k * 1549 / s).toLocaleString(), 'ev/s', (k * stream.length / s / 1e6).toFixed(0), 'MB/s');
}
let x = 0;
bench('framer only', () => { const f = new Framer({ frame: (b) => { x += b.length; }, reject: () => {} }); for (const c of chunks) f.push(c); });
bench('scan only', () => { for (const fr of frames) { const h = scan(fr); if (h.ok) x += h.uid.length; } });
bench('framer+scan', () => { const f = new Framer({ frame: (b) => { const h = scan(b); if (h.ok) x += h.uid.length; }, reject: () => {} }); for (const c of chunks) f.push(c); });
console.log(x > 0);
