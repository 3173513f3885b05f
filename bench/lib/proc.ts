// CPU time and resident memory of another process, from /proc (Linux). Elsewhere the numbers are
// reported as unavailable rather than guessed.
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';

let clkTck = 0;
function ticksPerSecond(): number {
  if (clkTck === 0) {
    try { clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { clkTck = 100; }
  }
  return clkTck;
}

/**
 * The fields of /proc/<pid>/stat from field 3 on (f[0] is field 3), i.e. after the parenthesised
 * command name, which may contain spaces; null when there is no such process.
 */
function statFields(pid: number): string[] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** user + system CPU seconds used so far by pid, or NaN. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) / ticksPerSecond() : NaN; // utime, stime (fields 14, 15)
}

/** seconds since pid started (its start time in /proc/<pid>/stat against /proc/uptime), or NaN */
export function ageSeconds(pid: number): number {
  const f = statFields(pid);
  if (!f) return NaN;
  const started = Number(f[19]) / ticksPerSecond(); // starttime (field 22)
  return Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) - started;
}

/** resident set size of pid in bytes, or NaN. */
export function rssBytes(pid: number): number {
  return procNumber(pid, 'status', /VmRSS:\s+(\d+) kB/) * 1024;
}

/** The number captured by `re` in /proc/<pid>/<file>, or NaN (no such process, file or field). */
function procNumber(pid: number, file: string, re: RegExp): number {
  try {
    const m = re.exec(fs.readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Samples a process's RSS every `ms` and keeps the peak since the last reset. */
export class ProcWatch {
  private peak = NaN;
  private timer: NodeJS.Timeout | null = null;
  constructor(readonly pid: number, ms = 100) {
    if (pid > 0) {
      this.timer = setInterval(() => this.sample(), ms);
      this.timer.unref();
    }
  }

  sample(): number {
    const r = rssBytes(this.pid);
    if (!(r <= this.peak)) this.peak = r; // NaN-safe max
    return r;
  }

  /** peak RSS since the previous call, then start over */
  takePeak(): number {
    this.sample();
    const p = this.peak;
    this.peak = NaN;
    return p;
  }

  cpu(): number {
    return this.pid > 0 ? cpuSeconds(this.pid) : NaN;
  }

  /** seconds since the process started, or NaN */
  ageSeconds(): number {
    return this.pid > 0 ? ageSeconds(this.pid) : NaN;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

/**
 * Pin every thread of a running process to one CPU (taskset -a -p). Returns false when taskset is
 * missing or refuses (the caller reports the run as unpinned).
 */
export function pinProcess(pid: number, cpu: number): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** write-type syscalls (write, writev, send…) made so far by pid (/proc/<pid>/io syscw), or NaN. */
export function writeSyscalls(pid: number): number {
  return procNumber(pid, 'io', /^syscw:\s+(\d+)/m);
}

/**
 * Times pid's main thread went to sleep and was woken again (voluntary context switches, from
 * /proc/<pid>/status), or NaN. An event loop sleeps in epoll_wait when it has nothing to do, so
 * this counts its wakeups.
 */
export function wakeups(pid: number): number {
  return procNumber(pid, 'status', /^voluntary_ctxt_switches:\s+(\d+)/m);
}
