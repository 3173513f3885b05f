// Run cotstream subcommands in-process with their output captured; a command error rejects with
// its message followed by everything the command printed.
import { Command, CommanderError } from 'commander';
import type { CommandIO } from '../../src/pki/options.ts';

export async function runCommands(register: (program: Command, io: CommandIO) => void, args: string[]): Promise<string> {
  let out = '';
  const io: CommandIO = { out: (s: string) => void (out += s), err: (s: string) => void (out += s) };
  const program = new Command('cotstream').exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err });
  register(program, io);
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) throw new Error(`${err.message}\n${out}`);
    throw err;
  }
  return out;
}
