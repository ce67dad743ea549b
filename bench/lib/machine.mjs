import { execFileSync } from 'node:child_process';
import os from 'node:os';

/** What the figures were measured on: they only compare within one run on one machine. */
export async function machineFacts(root) {
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    availableParallelism: os.availableParallelism?.() ?? cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch} ${os.release()}`,
    loadAverage1m: Math.round(os.loadavg()[0] * 100) / 100,
    cpuBusyBeforePercent: await cpuBusyPercent(1000),
    commit: gitCommit(root),
  };
}

function gitCommit(root) {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return null; // not a git checkout, or no commit yet
  }
}

/**
 * How busy all cores are over `ms`, sampled before the bench starts anything: other work on
 * the machine (another test run, a build) takes cores from both sides of every ratio.
 */
async function cpuBusyPercent(ms) {
  const total = () =>
    os.cpus().reduce(
      (acc, { times }) => {
        acc.idle += times.idle;
        acc.all += times.user + times.nice + times.sys + times.irq + times.idle;
        return acc;
      },
      { idle: 0, all: 0 },
    );
  const a = total();
  await new Promise((r) => setTimeout(r, ms));
  const b = total();
  const all = b.all - a.all;
  return all > 0 ? Math.round((1 - (b.idle - a.idle) / all) * 100) : 0;
}
