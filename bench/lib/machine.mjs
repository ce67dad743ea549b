import { execFileSync } from 'node:child_process';
import os from 'node:os';

/** What the figures were measured on: they only compare within one run on one machine. */
export function machineFacts(root) {
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    availableParallelism: os.availableParallelism?.() ?? cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch} ${os.release()}`,
    loadAverage1m: Math.round(os.loadavg()[0] * 100) / 100,
    commit: gitCommit(root),
  };
}

function gitCommit(root) {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return null; // not a git checkout, or no commit yet
  }
}
