import { finishReasonOf, type JobError, type JobEvent, type JobStatus, type Usage } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import { isJobId } from '../routes/views';
import { DeltaFilter } from './text-deltas';

/**
 * A job as an OpenAI Responses object and event stream. Everything is derived from the job's
 * record and its numbered events, never from the moment a client asks, so a stream replayed from
 * the start on any replica is the same stream, event for event, `sequence_number` included:
 * resuming after N is replaying and skipping up to N.
 */

export const responseId = (jobId: string) => `resp_${jobId}`;
const messageId = (jobId: string) => `msg_${jobId}`;

/** The job id of a response id, or null for anything that cannot be one. */
export function jobIdOf(id: string): string | null {
  const jobId = id.startsWith('resp_') ? id.slice('resp_'.length) : '';
  return isJobId(jobId) ? jobId : null;
}

export type ResponseStatus = 'queued' | 'in_progress' | 'completed' | 'incomplete' | 'failed' | 'cancelled';

export interface OutputText {
  type: 'output_text';
  text: string;
  annotations: [];
  logprobs: [];
}

export interface OutputMessage {
  id: string;
  type: 'message';
  status: 'in_progress' | 'completed' | 'incomplete';
  role: 'assistant';
  content: OutputText[];
}

/** What every state of a response shows: the request as the job recorded it. */
interface ResponseBase {
  id: string;
  object: 'response';
  created_at: number;
  model: string;
  instructions: string | null;
  max_output_tokens: number | null;
  temperature: number | null;
  top_p: number | null;
  metadata: Record<string, string>;
  conversation: { id: string } | null;
  service_tier: 'default' | 'flex';
  parallel_tool_calls: false;
  tool_choice: 'auto';
  tools: [];
  text: { format: { type: 'text' } };
  truncation: 'disabled';
  previous_response_id: null;
  store: true;
}

export interface ResponseObject extends ResponseBase {
  status: ResponseStatus;
  output: OutputMessage[];
  error: { code: string; message: string } | null;
  incomplete_details: { reason: 'max_output_tokens' | 'content_filter' } | null;
  usage: ResponseUsage | null;
  completed_at: number | null;
}

interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** One event of the stream: its `type`, its fields and its `sequence_number` (from 0). */
export type ResponseEvent = { type: string; sequence_number: number } & Record<string, unknown>;

const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

function baseOf(job: JobRecord): ResponseBase {
  const { messages, params, conversation } = job.spec;
  const first = messages[0];
  return {
    id: responseId(job.id),
    object: 'response',
    created_at: seconds(job.createdAt),
    model: job.model,
    instructions: first?.role === 'system' && messages.length > 1 ? first.content : null,
    max_output_tokens: params.max_tokens ?? null,
    temperature: params.temperature ?? null,
    top_p: params.top_p ?? null,
    metadata: job.metadata ?? {},
    conversation: conversation ? { id: conversation.id } : null,
    service_tier: job.priority === 'batch' ? 'flex' : 'default',
    parallel_tool_calls: false,
    tool_choice: 'auto',
    tools: [],
    text: { format: { type: 'text' } },
    truncation: 'disabled',
    previous_response_id: null,
    store: true,
  };
}

function usageOf(usage: Usage | null): ResponseUsage {
  const u = usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  return {
    input_tokens: u.prompt_tokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.total_tokens,
  };
}

const outputText = (text: string): OutputText => ({
  type: 'output_text',
  text,
  annotations: [],
  logprobs: [],
});

function message(jobId: string, status: OutputMessage['status'], content: OutputText[]): OutputMessage {
  return { id: messageId(jobId), type: 'message', status, role: 'assistant', content };
}

/** A finished answer's status: cut at max_output_tokens (or filtered) is `incomplete`, as OpenAI says. */
function finished(finishReason: string | null): Pick<ResponseObject, 'status' | 'incomplete_details'> {
  const reason = finishReasonOf(finishReason);
  if (reason === 'length')
    return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (reason === 'content_filter')
    return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

const EMPTY = { output: [], error: null, incomplete_details: null, usage: null, completed_at: null };
const errorOf = (error: JobError) => ({ code: error.code, message: error.message });
const CANCELLED = { code: 'cancelled', message: 'the response was cancelled' };

/** The response as it stands, for a poll. */
export function toResponse(job: JobRecord): ResponseObject {
  const base = baseOf(job);
  const status: JobStatus = job.status;
  switch (status) {
    case 'queued':
    case 'in_progress':
    case 'cancelled':
      return { ...base, ...EMPTY, status };
    case 'failed':
      return {
        ...base,
        ...EMPTY,
        status,
        error: errorOf(job.error ?? { code: 'failed', message: 'failed' }),
      };
    case 'completed': {
      const outcome = finished(job.finishReason);
      const itemStatus = outcome.status === 'completed' ? 'completed' : 'incomplete';
      return {
        ...base,
        ...outcome,
        output: [message(job.id, itemStatus, [outputText(job.result ?? '')])],
        error: null,
        usage: usageOf(job.usage),
        completed_at: job.completedAt ? seconds(job.completedAt) : null,
      };
    }
  }
}

/**
 * The stream of a response, from the job's events: `response.created` and `response.queued`,
 * `response.in_progress` when a worker starts, the message's `output_item.added` and
 * `content_part.added` before its first text, one `output_text.delta` per token event, then the
 * `done` events and `response.completed` (`response.incomplete` when cut at max_output_tokens).
 * A failed job ends with `response.failed`; a cancelled one too, its response saying
 * `cancelled` (OpenAI's stream has no event of its own for that).
 */
export class ResponseEventStream {
  private seq = 0;
  private started = false;
  private opened = false;
  private done = false;
  private readonly text = new DeltaFilter();
  private readonly base: ResponseBase;

  constructor(private readonly job: JobRecord) {
    this.base = baseOf(job);
  }

  /** True once the stream has its last event. */
  get ended(): boolean {
    return this.done;
  }

  /** The events every stream begins with. */
  opening(): ResponseEvent[] {
    const queued = this.snapshot({ status: 'queued' });
    return [
      this.event('response.created', { response: queued }),
      this.event('response.queued', { response: queued }),
    ];
  }

  /** The events one job event makes (none for most status changes). */
  next(event: JobEvent): ResponseEvent[] {
    if (this.done) return [];
    switch (event.type) {
      case 'status':
        if (event.restarted) this.text.restart();
        return event.status === 'in_progress' ? this.start() : [];
      case 'token': {
        const delta = this.text.push(event.text);
        if (delta === null) return this.diverged();
        if (delta === '') return [];
        return [
          ...this.open(),
          this.event('response.output_text.delta', { ...this.part(), delta, logprobs: [] }),
        ];
      }
      case 'completed':
        return this.complete(event.result, event.finishReason, event.usage);
      case 'failed':
        return this.fail('failed', errorOf(event.error));
      case 'cancelled':
        return this.fail('cancelled', CANCELLED);
    }
  }

  private start(): ResponseEvent[] {
    if (this.started) return [];
    this.started = true;
    return [this.event('response.in_progress', { response: this.snapshot({ status: 'in_progress' }) })];
  }

  private open(): ResponseEvent[] {
    if (this.opened) return [];
    this.opened = true;
    return [
      this.event('response.output_item.added', {
        output_index: 0,
        item: message(this.job.id, 'in_progress', []),
      }),
      this.event('response.content_part.added', { ...this.part(), part: outputText('') }),
    ];
  }

  private complete(result: string, finishReason: string | null, usage: Usage | null): ResponseEvent[] {
    const outcome = finished(finishReason);
    const item = message(this.job.id, outcome.status === 'completed' ? 'completed' : 'incomplete', [
      outputText(result),
    ]);
    const events = [
      ...this.start(),
      ...this.open(),
      this.event('response.output_text.done', { ...this.part(), text: result, logprobs: [] }),
      this.event('response.content_part.done', { ...this.part(), part: outputText(result) }),
      this.event('response.output_item.done', { output_index: 0, item }),
    ];
    const response = this.snapshot({ ...outcome, output: [item], usage: usageOf(usage) });
    events.push(this.event(`response.${outcome.status}`, { response }));
    this.done = true;
    return events;
  }

  private fail(status: 'failed' | 'cancelled', error: { code: string; message: string }): ResponseEvent[] {
    this.done = true;
    return [this.event('response.failed', { response: this.snapshot({ status, error }) })];
  }

  /** The restarted job says something else than what was streamed: the stream cannot go on. */
  private diverged(): ResponseEvent[] {
    this.done = true;
    return [
      this.event('error', {
        code: 'stream_restarted',
        message: `the job restarted after its worker was lost, and its new text differs from what was streamed; poll ${this.base.id} for the final answer`,
        param: null,
      }),
    ];
  }

  private part() {
    return { item_id: messageId(this.job.id), output_index: 0, content_index: 0 };
  }

  private snapshot(state: Partial<ResponseObject> & { status: ResponseStatus }): ResponseObject {
    return { ...this.base, ...EMPTY, ...state };
  }

  private event(type: string, fields: Record<string, unknown>): ResponseEvent {
    return { type, ...fields, sequence_number: this.seq++ };
  }
}
