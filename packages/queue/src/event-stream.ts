import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isTerminalEvent, type JobEvent, type JobEventBody, type JobEventType } from '@llmq/contracts';
import type { Redis } from 'ioredis';
import { keys } from './keys';

const APPEND_LUA = readFileSync(join(__dirname, '..', 'lua', 'appendEvent-1.lua'), 'utf8');

export interface EventStreamOptions {
  /** @defaultValue "llmq" */
  prefix?: string;
  /** How long a finished job's stream stays in Redis (Postgres keeps a copy). @defaultValue 600 */
  terminalTtlSeconds?: number;
  /** Safety TTL of a live stream, refreshed by every event. @defaultValue 86400 */
  liveTtlSeconds?: number;
}

type AppendCommand = (
  key: string,
  channel: string,
  type: string,
  body: string,
  terminal: string,
  ttl: string,
  liveTtl: string,
) => Promise<number>;

/** Parses one `PUBLISH`ed event: "<seq> <type> <json>". */
export function parseEventMessage(message: string): JobEvent | null {
  const a = message.indexOf(' ');
  const b = message.indexOf(' ', a + 1);
  if (a < 0 || b < 0) return null;
  const seq = Number(message.slice(0, a));
  const type = message.slice(a + 1, b) as JobEventType;
  return { seq, type, ...(JSON.parse(message.slice(b + 1)) as object) } as JobEvent;
}

function bodyJson(event: JobEventBody): string {
  const { type: _type, ...rest } = event;
  return JSON.stringify(rest);
}

/** A job's numbered event stream in Redis (an XADD-ed stream plus a pub/sub channel for followers). */
export class EventStream {
  readonly prefix: string;
  private readonly terminalTtl: string;
  private readonly liveTtl: string;

  constructor(
    private readonly redis: Redis,
    options: EventStreamOptions = {},
  ) {
    this.prefix = options.prefix ?? 'llmq';
    this.terminalTtl = String(options.terminalTtlSeconds ?? 600);
    this.liveTtl = String(options.liveTtlSeconds ?? 86_400);
    if (!(redis as unknown as { llmqAppendEvent?: unknown }).llmqAppendEvent) {
      redis.defineCommand('llmqAppendEvent', { numberOfKeys: 1, lua: APPEND_LUA });
    }
  }

  /**
   * Appends an event. Returns its seq, or null when the stream already holds a terminal event
   * (the job finished another way, e.g. it was cancelled), in which case nothing was written.
   */
  async append(jobId: string, event: JobEventBody): Promise<number | null> {
    const append = (this.redis as unknown as { llmqAppendEvent: AppendCommand }).llmqAppendEvent.bind(
      this.redis,
    );
    const seq = await append(
      keys.events(this.prefix, jobId),
      keys.eventChannel(this.prefix, jobId),
      event.type,
      bodyJson(event),
      isTerminalEvent(event) ? '1' : '0',
      this.terminalTtl,
      this.liveTtl,
    );
    return seq > 0 ? seq : null;
  }

  /** Events with seq > afterSeq, in order. */
  async read(jobId: string, afterSeq = 0): Promise<JobEvent[]> {
    const entries = await this.redis.xrange(keys.events(this.prefix, jobId), `${afterSeq + 1}-0`, '+');
    return entries.map(([id, fields]) => {
      let type = '';
      let body = '{}';
      for (let i = 0; i < fields.length; i += 2) {
        if (fields[i] === 't') type = fields[i + 1] ?? '';
        else if (fields[i] === 'd') body = fields[i + 1] ?? '{}';
      }
      return { seq: Number(id.split('-')[0]), type, ...(JSON.parse(body) as object) } as JobEvent;
    });
  }

  /** Whether Redis still holds this job's stream. */
  async exists(jobId: string): Promise<boolean> {
    return (await this.redis.exists(keys.events(this.prefix, jobId))) === 1;
  }
}
