import { scan } from '../protocol/scan.ts';
import { readFileSync } from 'node:fs';
const sa = readFileSync('protocol/samples/01-sa-atak-civ-4.0-streaming.xml');
const fr = Buffer.from(sa.toString().slice(sa.indexOf('<event')).trimEnd());
let x = 0;
const t0 = performance.now();
for (let i = 0; i < 1_000_000; i++) { const h = scan(fr); if (h.ok) x += h.uid.length; }
console.log('scan ev/s', Math.round(1e6 / ((performance.now() - t0) / 1000)), x);
