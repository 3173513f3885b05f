// The numeric options of the small benches (parser.ts, takproto.ts): `--name value` pairs, --help,
// and an error for anything else (a mistyped option must not run the benchmark with defaults).
export function numericArgs<T extends Record<string, number>>(usage: string, defaults: T, argv = process.argv.slice(2)): T {
  const out: Record<string, number> = { ...defaults };
  const fail = (why: string): never => {
    process.stderr.write(`${why}\n\n${usage}`);
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') { process.stdout.write(usage); process.exit(0); }
    const [flag, inline] = a.split('=', 2);
    const name = flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (!flag.startsWith('--') || !(name in defaults)) fail(`unknown argument: ${a}`);
    const v = inline ?? argv[++i];
    const n = Number(v);
    if (v === undefined || v === '' || !Number.isFinite(n) || n <= 0) fail(`${flag}: expected a positive number, got ${v === undefined ? 'nothing' : `"${v}"`}`);
    out[name] = n;
  }
  return out as T;
}
