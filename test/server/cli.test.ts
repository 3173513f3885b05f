// `cotstream start --help` is what an operator reads: every option names its default and its
// environment variable, and no default prints as an empty string.
import assert from 'node:assert/strict';
import { CommanderError } from 'commander';
import { buildProgram } from '../../src/cli.ts';

async function help(args: string[]): Promise<string> {
  let out = '';
  const program = buildProgram().exitOverride().configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  await assert.rejects(program.parseAsync(args, { from: 'user' }), (e: CommanderError) => e.code === 'commander.helpDisplayed');
  return out;
}

describe('cli: cotstream start --help', function () {
  it('documents a default and an environment variable for every option', async () => {
    const text = await help(['start', '--help']);
    const entries = text.split('Options:')[1]!.split(/\n(?=  -)/).filter((e) => /--[a-z]/.test(e)).map((e) => e.replace(/\s+/g, ' '));
    assert.ok(entries.length > 20, `${entries.length} options`);
    for (const e of entries) {
      const flag = /--[a-z-]+/.exec(e)![0];
      if (flag === '--help') continue;
      assert.match(e, /default/i, `${flag} documents its default: ${e}`);
      assert.doesNotMatch(e, /\[default: \]/, `${flag} shows an empty default: ${e}`);
      assert.match(e, /env [A-Z_]+/, `${flag} names its environment variable: ${e}`);
    }
  });
});
