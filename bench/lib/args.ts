// The numeric options of the small benches (parser.ts, takproto.ts), parsed by commander as the
// other benches' are: --help, and exit 2 for anything else (a mistyped option must not run the
// benchmark with defaults).
import { Command, InvalidArgumentError } from 'commander';

function positive(v: string): number {
  const n = Number(v);
  if (v === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number, got "${v}"`);
  return n;
}

/** `options`: name (camelCase, as --kebab-case on the command line) -> [help, default]. */
export function numericArgs<T extends Record<string, number>>(
  name: string, description: string, options: { [K in keyof T]: [string, number] }, argv = process.argv.slice(2),
): T {
  const program = new Command(name).description(description)
    .exitOverride((err) => process.exit(err.code === 'commander.helpDisplayed' || err.code === 'commander.help' ? 0 : 2));
  for (const [key, [help, def]] of Object.entries(options)) {
    const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    program.option(`--${flag} <n>`, `${help} (default ${def})`, positive, def);
  }
  return program.parse(argv, { from: 'user' }).opts<T>();
}
