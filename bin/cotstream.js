#!/usr/bin/env node
// Runs the TypeScript CLI through tsx so `npx cotstream` works from a clone without a build step.
import { register } from 'tsx/esm/api';
register();
process.env.COTSTREAM_CLI_MAIN = '1';
await import('../src/cli.ts');
