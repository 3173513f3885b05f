// The real CoT samples in protocol/samples/ (copied from the shared corpus; see samples/SOURCES.md).
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const SAMPLES_DIR = fileURLToPath(new URL('../../protocol/samples/', import.meta.url));

/** name -> file bytes, in file-name order */
export function loadSamples(): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of readdirSync(SAMPLES_DIR).sort()) {
    if (f.endsWith('.xml')) out.set(f, readFileSync(join(SAMPLES_DIR, f)));
  }
  return out;
}
