// What one wakeup of an idle Node process costs on this machine, in CPU: a child that sleeps in
// epoll is woken by one byte on a pipe, echoes it and sleeps again, n times. Its CPU per round is
// the price of waking it with (almost) no work to do. Measured with the waker on another CPU (the
// kernel must interrupt the sleeping CPU: on a VM, an IPI the hypervisor delivers) and on the same
// CPU (the waker blocks, the child runs): bench/redis.ts prints both beside its figures, because at
// a light load the pair of nodes wakes three times as often as one node; each wakeup costs this
// bare price and then its work runs in cold caches (README, "What the Redis hop costs").
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpuSeconds, pinProcess } from './proc.ts';

const ECHO = "process.stdin.on('data', (b) => process.stdout.write(b))";
const ONE = Buffer.from([1]);

/** µs of the child's CPU per wakeup with the child on `cpu` (this process pinned elsewhere or not), or NaN */
export async function wakeupCostUs(cpu: number, rounds = 20_000): Promise<number> {
  const child = spawn(process.execPath, ['-e', ECHO], { stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    await once(child, 'spawn');
    if (!pinProcess(child.pid!, cpu)) return NaN;
    const out = child.stdout!;
    const ping = (): Promise<void> => new Promise((resolve) => { out.once('data', () => resolve()); child.stdin!.write(ONE); });
    for (let i = 0; i < 2_000; i++) await ping(); // JIT and page faults out of the way
    const c0 = cpuSeconds(child.pid!);
    for (let i = 0; i < rounds; i++) await ping();
    return ((cpuSeconds(child.pid!) - c0) / rounds) * 1e6;
  } finally {
    child.kill();
  }
}
