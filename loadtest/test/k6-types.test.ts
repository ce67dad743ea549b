import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * The k6 scripts are type-checked against @types/k6 (and the xk6-sse declarations in k6/types),
 * and the Node runner against its JSDoc types, by TypeScript itself: no k6 binary is needed.
 */
const LOADTEST = join(__dirname, '..');
const TSC = require.resolve('typescript/bin/tsc');

function tsc(project: string): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [TSC, '-p', join(LOADTEST, project)], { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('type checks', () => {
  it('the k6 scripts type-check against @types/k6 (tsc -p loadtest/tsconfig.json)', () => {
    const { status, output } = tsc('tsconfig.json');
    if (status !== 0) throw new Error(`tsc found errors in loadtest/k6:\n${output}`);
  });

  it('the Node runner and these tests type-check (tsc -p loadtest/tsconfig.node.json)', () => {
    const { status, output } = tsc('tsconfig.node.json');
    if (status !== 0) throw new Error(`tsc found errors in the runner:\n${output}`);
  });
});
