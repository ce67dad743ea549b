#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { createKeyCommand } from './keys';
import { stateDir } from './paths';
import { startCommand } from './start';

const USAGE = `usage:
  llmq start                          run the whole product on the embedded stack (npm start)
  llmq keys create --tenant NAME [--name LABEL]
                                      create an API key; the key is printed alone on the last line

Environment: DATABASE_URL (else the embedded PGlite in .llmq/), REDIS_URL, LLMQ_HOME (state dir).`;

async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  if (command === 'start') {
    await startCommand(process.env);
    return 0;
  }
  if (command === 'keys' && sub === 'create') {
    const { values } = parseArgs({
      args: rest,
      options: { tenant: { type: 'string' }, name: { type: 'string' } },
      strict: true,
    });
    if (!values.tenant) {
      process.stderr.write(`llmq keys create: --tenant is required\n\n${USAGE}\n`);
      return 2;
    }
    await createKeyCommand(process.env, stateDir(), values.tenant, values.name ?? null);
    return 0;
  }
  process.stderr.write(
    `${command ? `unknown command: ${[command, sub].filter(Boolean).join(' ')}\n\n` : ''}${USAGE}\n`,
  );
  return command === undefined || command === 'help' || command === '--help' ? 0 : 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`llmq: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
