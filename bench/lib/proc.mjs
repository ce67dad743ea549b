import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/**
 * What the kernel says about the processes a benchmark started (Linux /proc): their resident
 * memory, the CPU they used, and this process's file descriptor limit. The figures come from
 * outside the measured process, so reading them costs it nothing.
 */

/** VmRSS of a process in bytes, from /proc/<pid>/status. */
export function rssBytes(pid) {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

let ticksPerSecond;
function clockTicks() {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100; // USER_HZ on every Linux architecture Node runs on
    }
  }
  return ticksPerSecond;
}

/** User + system CPU seconds a process has used so far, from /proc/<pid>/stat (NaN once it is gone). */
export function cpuSeconds(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return NaN;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks(); // utime and stime, fields 14 and 15
}

/**
 * CPU used by named processes between `start()` and `stop()`, in seconds and as a share of one
 * core over the wall time between the two. `bench` is this process (the load generator).
 * @param {Record<string, number | undefined>} pids
 */
export function cpuMeter(pids) {
  const named = Object.entries(pids).filter(([, pid]) => pid !== undefined);
  const read = () => ({
    at: performance.now(),
    bench: process.cpuUsage(),
    procs: Object.fromEntries(named.map(([name, pid]) => [name, cpuSeconds(pid)])),
  });
  let first = read();
  return {
    start() {
      first = read();
    },
    /** @returns {{ seconds: number, cpuSeconds: Record<string, number>, coreShare: Record<string, number> }} */
    stop() {
      const last = read();
      const seconds = (last.at - first.at) / 1000;
      const used = Object.fromEntries(named.map(([name]) => [name, last.procs[name] - first.procs[name]]));
      const bench = process.cpuUsage(first.bench);
      used.bench = (bench.user + bench.system) / 1e6;
      const coreShare = Object.fromEntries(Object.entries(used).map(([n, s]) => [n, s / seconds]));
      return { seconds, cpuSeconds: used, coreShare };
    },
  };
}

/** This process's soft and hard limits of open files, from /proc/self/limits. */
export function openFilesLimit() {
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(
    readFileSync('/proc/self/limits', 'utf8'),
  );
  const value = (v) => (v === undefined || v === 'unlimited' ? Infinity : Number(v));
  return { soft: value(match?.[1]), hard: value(match?.[2]) };
}

/**
 * Makes sure this process (and every process it spawns afterwards: they inherit its limits) may
 * open `needed` files. Node cannot raise its own limit, so a soft limit below `needed` is raised
 * to the hard limit with util-linux `prlimit`; a hard limit below it is an error that says what to do.
 * @returns {{ soft: number, hard: number, raisedFrom?: number }}
 */
export function ensureOpenFiles(needed, log) {
  const limit = openFilesLimit();
  if (limit.soft >= needed) return limit;
  if (limit.hard < needed) {
    throw new Error(
      `${needed} open files are needed, but the hard limit is ${limit.hard}: raise it (ulimit -Hn as root, or /etc/security/limits.conf) and run again`,
    );
  }
  const soft = Number.isFinite(limit.hard) ? limit.hard : needed;
  try {
    execFileSync(
      'prlimit',
      [
        '--pid',
        String(process.pid),
        `--nofile=${soft}:${limit.hard === Infinity ? 'unlimited' : limit.hard}`,
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
  } catch (error) {
    throw new Error(
      `${needed} open files are needed, but the soft limit is ${limit.soft} and prlimit could not raise it ` +
        `(${String(error?.stderr ?? error?.message ?? error).trim()}): run \`ulimit -n ${needed}\` first`,
    );
  }
  log?.(
    `raised the open files soft limit from ${limit.soft} to ${soft} (the processes started from now on inherit it)`,
  );
  return { ...openFilesLimit(), raisedFrom: limit.soft };
}
