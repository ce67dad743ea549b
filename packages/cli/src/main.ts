#!/usr/bin/env node
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  LIMIT_FLAGS,
  UsageError,
  checkKeyId,
  createKeyCommand,
  keyLimitsCommand,
  listKeysCommand,
  parseLimitFlags,
  parseMaxActiveJobs,
  revokeKeyCommand,
  tenantLimitsCommand,
} from './keys';
import { stateDir } from './paths';
import { startCommand } from './start';

const USAGE = `usage:
  llmq start                          run the whole product on the embedded stack (npm start)
  llmq keys create --tenant NAME [--name LABEL] [limits]
                                      create an API key; the key is printed alone on the last line
  llmq keys list [--tenant NAME] [--all] [--json]
                                      the keys (--all: revoked ones too)
  llmq keys limits ID [--name LABEL] [limits]
                                      change a key's name or limits
  llmq keys revoke ID                 revoke a key; running API processes refuse it at once
  llmq tenants limits NAME [--max-active-jobs N|default]
                                      show or set how many jobs a tenant may have queued + running

limits: --rpm N  --request-burst N  --tpm N  --token-burst N  --daily-budget USD  --monthly-budget USD
  (requests and tokens per minute, bucket sizes, spend caps; 0 = no limit, "default" = the
  server's configured default, which is also what an unset limit takes)

Environment: DATABASE_URL (else the running stack's, else the embedded PGlite in .llmq/), REDIS_URL
(else the running stack's; revoke marks the key there), LLMQ_PREFIX, LLMQ_HOME (state dir).`;

const limitOptions = Object.fromEntries(
  Object.keys(LIMIT_FLAGS).map((flag) => [flag, { type: 'string' as const }]),
) as Record<keyof typeof LIMIT_FLAGS, { type: 'string' }>;

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/** parseArgs, with its errors (unknown flag, missing value…) as usage errors. */
function parse<O extends OptionsConfig>(args: string[], options: O, positionals: number) {
  const config = { args, options, strict: true as const, allowPositionals: positionals > 0 };
  let parsed: ReturnType<typeof parseArgs<typeof config>>;
  try {
    parsed = parseArgs(config);
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (parsed.positionals.length > positionals) {
    throw new UsageError(`unexpected argument "${parsed.positionals[positionals]}"`);
  }
  return parsed;
}

function nonEmpty(value: string | undefined, flag: string): string | undefined {
  if (value === '') throw new UsageError(`${flag} needs a value`);
  return value;
}

const SUBCOMMANDS = new Set(['create', 'list', 'revoke', 'limits']);

async function keys(sub: string | undefined, rest: string[]): Promise<number> {
  const env = process.env;
  const state = stateDir();
  switch (sub) {
    case 'create': {
      const { values } = parse(
        rest,
        { tenant: { type: 'string' }, name: { type: 'string' }, ...limitOptions },
        0,
      );
      if (!values.tenant) throw new UsageError('--tenant is required');
      const limits = parseLimitFlags(values);
      await createKeyCommand(env, state, values.tenant, nonEmpty(values.name, '--name') ?? null, limits);
      return 0;
    }
    case 'list': {
      const { values } = parse(
        rest,
        { tenant: { type: 'string' }, all: { type: 'boolean' }, json: { type: 'boolean' } },
        0,
      );
      const tenant = nonEmpty(values.tenant, '--tenant');
      await listKeysCommand(env, state, {
        ...(tenant !== undefined ? { tenant } : {}),
        all: values.all ?? false,
        json: values.json ?? false,
      });
      return 0;
    }
    case 'revoke': {
      const { positionals } = parse(rest, {}, 1);
      return revokeKeyCommand(env, state, checkKeyId(positionals[0], 'llmq keys revoke'));
    }
    case 'limits': {
      const { values, positionals } = parse(rest, { name: { type: 'string' }, ...limitOptions }, 1);
      const id = checkKeyId(positionals[0], 'llmq keys limits');
      const limits = parseLimitFlags(values);
      const name = values.name === undefined ? undefined : values.name === '' ? null : values.name;
      if (name === undefined && Object.keys(limits).length === 0) {
        throw new UsageError('give at least one limit to change (or --name; --name "" removes the name)');
      }
      return keyLimitsCommand(env, state, id, { ...(name !== undefined ? { name } : {}), limits });
    }
    default:
      throw new UsageError(sub ? `unknown command: keys ${sub}` : 'keys needs a command');
  }
}

async function tenants(sub: string | undefined, rest: string[]): Promise<number> {
  if (sub !== 'limits')
    throw new UsageError(sub ? `unknown command: tenants ${sub}` : 'tenants needs a command');
  const { values, positionals } = parse(rest, { 'max-active-jobs': { type: 'string' } }, 1);
  const tenant = positionals[0];
  if (!tenant) throw new UsageError('llmq tenants limits needs the tenant name');
  const raw = values['max-active-jobs'];
  await tenantLimitsCommand(
    process.env,
    stateDir(),
    tenant,
    raw === undefined ? undefined : parseMaxActiveJobs(raw),
  );
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  try {
    switch (command) {
      case 'start':
        await startCommand(process.env);
        return 0;
      case 'keys':
        return await keys(sub, rest);
      case 'tenants':
        return await tenants(sub, rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return 0;
      default:
        throw new UsageError(`unknown command: ${command}`);
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    const known =
      (command === 'keys' && SUBCOMMANDS.has(sub ?? '')) || (command === 'tenants' && sub === 'limits');
    const where = known ? `llmq ${command} ${sub}` : 'llmq';
    process.stderr.write(`${where}: ${error.message}\n\n${USAGE}\n`);
    return 2;
  }
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
