import { createHash, randomUUID } from 'node:crypto';
import { canonicalJson } from '@llmq/cache';
import {
  chatCompletionRequestSchema,
  chatCompletionToGenerateRequest,
  generateRequestSchema,
  openAiJobError,
  toChatCompletion,
  toGenerationSpec,
} from '@llmq/contracts';
import type {
  BatchError,
  BatchLine,
  BatchOutputs,
  BatchRecord,
  BatchRepository,
  BatchResult,
  FileRepository,
  QueuedBatchJob,
} from '@llmq/db';
import { countPromptTokens } from '@llmq/llm';
import { JOB_CATALOG, closeCancelledJobs, type EventStream, type Producer } from '@llmq/queue';
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { PeriodicPass } from './periodic';

/** What finalization makes of a batch: its output files, or why it fails. */
type BuiltOutputs = ReturnType<Parameters<BatchRepository['finalizeNext']>[0]>;
/** The jobs one cancel or expiry step cancelled. */
type CancelledBatchJobs = Awaited<ReturnType<BatchRepository['cancelRequeued']>>[number];
type FinalizeOptions = NonNullable<Parameters<BatchRepository['finalizeNext']>[1]>;

/**
 * OpenAI batches in the fleet (docs/batches.md): the control job that validates a batch's input
 * file and expands its lines into `generate` jobs of the batch tier, and the sweep that
 * finalizes batches whose jobs have all finished.
 */

export interface BatchInputOptions {
  /** The batch's endpoint: every line's `url` must be this. */
  endpoint: string;
  /** Requests (non-blank lines) a batch may have. */
  maxRequests: number;
  /** Prompt tokens a request may have (the API's MAX_PROMPT_TOKENS). */
  maxPromptTokens: number;
  /** The canonical name of a served model or alias, or null when nothing serves it. */
  resolveModel: (name: string) => string | null;
  /** Errors reported at most; validation stops there. @defaultValue 100 */
  maxErrors?: number;
}

export type ParsedBatchInput = { ok: true; lines: BatchLine[] } | { ok: false; errors: BatchError[] };

const MAX_CUSTOM_ID_CHARS = 512;
/** Lines validated between two turns of the event loop, so a big file does not stall running jobs. */
const YIELD_EVERY = 200;

const lineError = (code: string, message: string, line: number | null, param: string | null): BatchError => ({
  code,
  message,
  line,
  param,
});
/** Why a batch fails that llmq could not process (not its file's fault). */
const notProcessed = () =>
  lineError('internal_error', 'The batch could not be processed; create it again.', null, null);

/**
 * Validates a batch input file (OpenAI's JSONL: one `{custom_id, method, url, body}` per line)
 * and turns each line into a job spec. Like OpenAI, one bad line fails the whole batch: the
 * errors name their line (1-based; blank lines are skipped but counted) and parameter, and no
 * job is created, so a client fixes the file and sends it again instead of reconciling a
 * half-run batch.
 */
export async function parseBatchInput(
  content: Buffer,
  options: BatchInputOptions,
): Promise<ParsedBatchInput> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(content);
  } catch {
    return {
      ok: false,
      errors: [lineError('invalid_file_encoding', 'The input file is not UTF-8 text.', null, null)],
    };
  }
  const raw = text.split('\n');
  const requests = raw.reduce((n, l) => (l.trim() === '' ? n : n + 1), 0);
  if (requests === 0) {
    return { ok: false, errors: [lineError('empty_file', 'The input file has no requests.', null, null)] };
  }
  if (requests > options.maxRequests) {
    const message = `The input file has ${requests} requests; a batch may have at most ${options.maxRequests}.`;
    return { ok: false, errors: [lineError('too_many_requests', message, null, null)] };
  }
  const maxErrors = options.maxErrors ?? 100;
  const lines: BatchLine[] = [];
  const errors: BatchError[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < raw.length && errors.length < maxErrors; i++) {
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((resolve) => setImmediate(resolve));
    const source = raw[i]!;
    if (source.trim() === '') continue;
    const checked = checkLine(source, i + 1, options, seen);
    if ('error' in checked) errors.push(checked.error);
    else lines.push(checked.line);
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, lines };
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A zod issue path as OpenAI names parameters: `messages[0].content`. */
function paramOf(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (name, key) =>
      typeof key === 'number' ? `${name}[${key}]` : name ? `${name}.${String(key)}` : String(key),
    '',
  );
}

function bodyError(error: z.ZodError, line: number): BatchError {
  const issue = error.issues[0];
  const path = issue ? paramOf(issue.path) : '';
  const param = path ? `body.${path}` : 'body';
  return lineError('invalid_request', `${param}: ${issue?.message ?? 'invalid'}`, line, param);
}

/** One line: its envelope, then its body as a chat completion request llmq can serve. */
function checkLine(
  source: string,
  line: number,
  options: BatchInputOptions,
  seen: Set<string>,
): { line: BatchLine } | { error: BatchError } {
  const fail = (code: string, message: string, param: string | null) => ({
    error: lineError(code, message, line, param),
  });
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch {
    return fail('invalid_json_line', 'This line is not parseable as valid JSON.', null);
  }
  if (!isObject(value)) return fail('invalid_json_line', 'Each line must be a JSON object.', null);
  const { custom_id: customId, method, url, body } = value;
  if (customId === undefined || customId === null) {
    return fail('missing_required_parameter', 'Missing required parameter: custom_id.', 'custom_id');
  }
  if (typeof customId !== 'string' || customId === '' || customId.length > MAX_CUSTOM_ID_CHARS) {
    return fail(
      'invalid_value',
      `custom_id must be a string of 1 to ${MAX_CUSTOM_ID_CHARS} characters.`,
      'custom_id',
    );
  }
  if (seen.has(customId)) {
    return fail(
      'duplicate_custom_id',
      'The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each request in a batch.',
      'custom_id',
    );
  }
  seen.add(customId);
  if (method !== 'POST')
    return fail('invalid_method', 'The method of a batch request must be POST.', 'method');
  if (url !== options.endpoint) {
    return fail(
      'invalid_url',
      `The URL of this request does not match the batch endpoint (${options.endpoint}).`,
      'url',
    );
  }
  if (!isObject(body))
    return fail('missing_required_parameter', 'body must be the request, a JSON object.', 'body');

  const chat = chatCompletionRequestSchema.safeParse(body);
  if (!chat.success) return { error: bodyError(chat.error, line) };
  if (chat.data.stream === true) {
    return fail(
      'invalid_value',
      'Streaming is not supported in a batch: the output file holds whole completions.',
      'body.stream',
    );
  }
  // Turns of a conversation run in order, one after the other: that is not batch work.
  if (chat.data.conversation_id !== undefined) {
    return fail('invalid_value', 'conversation_id is not supported in a batch.', 'body.conversation_id');
  }
  const request = generateRequestSchema.safeParse({
    ...chatCompletionToGenerateRequest(chat.data),
    priority: 'batch',
  });
  if (!request.success) return { error: bodyError(request.error, line) };
  const asked = chat.data.model;
  const model = options.resolveModel(asked);
  if (model === null) {
    return fail('model_not_found', `The model "${asked}" is not served here.`, 'body.model');
  }
  const spec = toGenerationSpec(request.data, model);
  spec.model = model; // aliases resolve here, as the API does for a single request
  const promptTokens = countPromptTokens(spec.messages);
  if (promptTokens > options.maxPromptTokens) {
    return fail(
      'context_length_exceeded',
      `The prompt is about ${promptTokens} tokens; the limit is ${options.maxPromptTokens}.`,
      'body.messages',
    );
  }
  const metadata = request.data.metadata ?? null;
  const requestHash = createHash('sha256')
    .update(canonicalJson({ spec, metadata, priority: 'batch' }))
    .digest('hex');
  return { line: { line, customId, jobId: randomUUID(), spec, requestHash, metadata } };
}

/** OpenAI's id of a batch request; derived from its job, so a repeated finalization writes the same. */
const requestId = (jobId: string) => `batch_req_${jobId.replaceAll('-', '')}`;

/** Why a request of the batch never ran, in OpenAI's codes. */
function notRun(batch: BatchRecord): { code: string; message: string } {
  switch (batch.status) {
    case 'expired':
      return {
        code: 'batch_expired',
        message: 'This request could not be executed before the completion window ended.',
      };
    case 'cancelled':
      return { code: 'batch_cancelled', message: 'The batch was cancelled before this request executed.' };
    default:
      return { code: 'request_cancelled', message: 'This request was cancelled before it executed.' };
  }
}

const toJsonl = (lines: string[]) =>
  lines.length === 0 ? null : Buffer.from(`${lines.join('\n')}\n`, 'utf8');

/**
 * The largest output or error file a batch may have: 128 MiB. Files are built in memory and
 * stored whole in a bytea column, which Postgres sends back as hex text, twice as long: well
 * below the 512 MiB a JavaScript string may hold.
 */
export const OUTPUT_MAX_BYTES = 128 * 1024 * 1024;

/**
 * The output and error files of a finished batch, in input order. A completed request is a
 * `chat.completion` with status 200; a failed one carries its OpenAI error body and the status a
 * direct call would have answered; one that never ran (cancelled, expired) has `response: null`
 * and an `error`, as OpenAI writes them. `request_id` is the job id (`/api/jobs/:id`).
 */
export function buildOutputs(
  batch: BatchRecord,
  results: BatchResult[],
  maxBytes = OUTPUT_MAX_BYTES,
): BuiltOutputs {
  const output: string[] = [];
  const errors: string[] = [];
  const bytes = { output: 0, errors: 0 };
  const add = (to: 'output' | 'errors', line: string) => {
    bytes[to] += Buffer.byteLength(line) + 1;
    (to === 'output' ? output : errors).push(line);
  };
  for (const r of results) {
    if (bytes.output > maxBytes || bytes.errors > maxBytes) return { fail: outputTooLarge(maxBytes) };
    const id = requestId(r.jobId);
    const custom_id = r.customId;
    switch (r.status) {
      case 'completed': {
        const body = toChatCompletion({
          jobId: r.jobId,
          model: r.servedModel ?? r.model,
          createdAt: r.createdAt,
          result: r.result ?? '',
          finishReason: r.finishReason,
          usage: r.usage,
        });
        add(
          'output',
          JSON.stringify({
            id,
            custom_id,
            response: { status_code: 200, request_id: r.jobId, body },
            error: null,
          }),
        );
        break;
      }
      case 'failed': {
        const { status, body } = openAiJobError(
          r.error ?? { code: 'internal_error', message: 'The request failed.' },
        );
        add(
          'errors',
          JSON.stringify({
            id,
            custom_id,
            response: { status_code: status, request_id: r.jobId, body },
            error: null,
          }),
        );
        break;
      }
      case 'cancelled':
        add('errors', JSON.stringify({ id, custom_id, response: null, error: notRun(batch) }));
        break;
      case 'queued':
      case 'in_progress':
        throw new Error(`batch ${batch.id} finalized with job ${r.jobId} still ${r.status}`);
    }
  }
  if (bytes.output > maxBytes || bytes.errors > maxBytes) return { fail: outputTooLarge(maxBytes) };
  return { output: toJsonl(output), errors: toJsonl(errors) } satisfies BatchOutputs;
}

const outputTooLarge = (maxBytes: number) =>
  lineError(
    'output_too_large',
    `The output or error file of this batch would be larger than ${maxBytes} bytes, the limit of a file llmq writes. The results of its requests remain at /api/jobs/{request_id}; split the input into smaller batches.`,
    null,
    null,
  );

/** Generate jobs added per BullMQ call when a batch is enqueued. */
const ENQUEUE_CHUNK = 500;

/** Enqueues jobs on the batch tier; an id BullMQ already holds is left as it is, so this may repeat. */
async function enqueueJobs(producer: Producer, jobs: QueuedBatchJob[]): Promise<void> {
  const { payload, options } = JOB_CATALOG.generate;
  const queue = producer.queueFor('batch');
  for (let i = 0; i < jobs.length; i += ENQUEUE_CHUNK) {
    await queue.addBulk(
      jobs.slice(i, i + ENQUEUE_CHUNK).map((j) => ({
        name: 'generate',
        data: payload.parse({ jobId: j.jobId, tenantId: j.tenantId, spec: j.spec, priority: 'batch' }),
        opts: { ...options, jobId: j.jobId },
      })),
    );
  }
}

/**
 * Ends the jobs an expiry (or the sweep after a cancel) cancelled in Postgres: out of the batch
 * queue, their event streams closed with `cancelled` and stored.
 */
function closeBatchJobs(
  deps: { batches: BatchRepository; producer: Producer; events: EventStream },
  step: CancelledBatchJobs,
): Promise<void> {
  const reason = step.expired ? 'the batch expired' : 'the batch was cancelled';
  return closeCancelledJobs(deps, 'batch', step.cancelledJobIds, reason, (streams) =>
    deps.batches.storeJobEvents(streams),
  );
}

export interface BatchDeps {
  batches: BatchRepository;
  files: FileRepository;
  producer: Producer;
  logger: Logger;
  input: Omit<BatchInputOptions, 'endpoint'>;
}

/**
 * The control job of a batch: validates its input file and expands it into jobs (recorded in
 * one transaction, then enqueued), or fails it with line-numbered errors. A run that finds the
 * batch expanded already (an earlier run died after the commit) enqueues its queued jobs again.
 */
export function createBatchProcessor(deps: BatchDeps) {
  return async function processBatch(job: Job): Promise<{ status: string }> {
    const { batchId } = JOB_CATALOG.batch.payload.parse(job.data);
    const log = deps.logger.child({ batchId });
    try {
      return { status: await runBatch(deps, batchId, log) };
    } catch (error) {
      const final = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      log.warn({ err: error, attempt: job.attemptsMade + 1, final }, 'batch control job failed');
      // A batch that could not be expanded must not stay `validating` for ever.
      if (final) {
        await deps.batches
          .fail(batchId, [notProcessed()])
          .catch((e: unknown) => log.warn({ err: e }, 'could not fail the batch'));
      }
      throw error;
    }
  };
}

async function runBatch(deps: BatchDeps, batchId: string, log: Logger): Promise<string> {
  const batch = await deps.batches.getById(batchId);
  if (!batch) return 'gone';
  if (batch.status === 'validating') {
    const content = await deps.files.content(batch.tenantId, batch.inputFileId);
    const parsed: ParsedBatchInput =
      content === null
        ? {
            ok: false,
            errors: [
              lineError('file_not_found', `No such File object: ${batch.inputFileId}`, null, 'input_file_id'),
            ],
          }
        : await parseBatchInput(content, { ...deps.input, endpoint: batch.endpoint });
    if (!parsed.ok) {
      await deps.batches.fail(batchId, parsed.errors);
      log.info({ errors: parsed.errors.length }, 'batch input file invalid; batch failed');
      return 'failed';
    }
    const outcome = await deps.batches.expand(batchId, parsed.lines);
    if (outcome.expanded) log.info({ requests: parsed.lines.length }, 'batch expanded into jobs');
    // Expanded by an earlier run (it died after the commit): its queued jobs are enqueued below.
    else if (outcome.status !== 'in_progress') return outcome.status ?? 'gone'; // cancelled meanwhile
  } else if (batch.status !== 'in_progress') {
    return batch.status;
  }
  const queued = await deps.batches.queuedJobs(batchId);
  await enqueueJobs(deps.producer, queued);
  return 'in_progress';
}

export interface BatchSweeperOptions {
  batches: BatchRepository;
  producer: Producer;
  /** Where cancelled jobs' streams end. */
  events: EventStream;
  logger: Logger;
  /** Time between passes. */
  intervalMs: number;
  /** A batch validating for longer than this has its control job enqueued again (a no-op if queued). */
  graceMs: number;
  /** Batches finalized per pass at most, so a pass stays short. @defaultValue 20 */
  maxPerPass?: number;
  /** Retries of a batch whose finalization fails. @defaultValue 5 attempts, 30 s then doubling */
  finalize?: FinalizeOptions;
  /** The largest output or error file. @defaultValue OUTPUT_MAX_BYTES (128 MiB) */
  maxOutputBytes?: number;
}

/**
 * Moves batches along where no job does: re-enqueues control jobs lost between the API's insert
 * and its enqueue, expires batches past their completion window, cancels jobs of cancelling or
 * expired batches that went back to the queue, and finalizes batches whose jobs have all
 * finished (output files in input order). Every worker process consuming the batch tier runs
 * one; each step is a conditional update or takes its batch with `FOR UPDATE SKIP LOCKED`, so
 * passes may overlap across the fleet and a crash mid-pass leaves nothing half-done.
 */
export class BatchSweeper extends PeriodicPass {
  constructor(private readonly options: BatchSweeperOptions) {
    super(options.intervalMs, (err) => options.logger.warn({ err }, 'batch sweep failed'));
  }

  /**
   * A batch still validating after the grace period: its control job was never enqueued (the
   * API died between insert and enqueue, or its enqueue failed), so it is enqueued now; or BullMQ
   * failed it without the processor deciding (its workers kept dying on it, past
   * maxStalledCount), so the batch fails. A job waiting, delayed or running is left alone.
   */
  private async revive(b: { id: string; tenantId: string }): Promise<void> {
    const { batches, producer, logger } = this.options;
    const state = await producer.queue('batch').getJobState(b.id);
    if (state === 'unknown') {
      await producer.enqueue('batch', b.id, { batchId: b.id, tenantId: b.tenantId });
      logger.warn({ batchId: b.id }, 'batch control job was missing; enqueued again');
    } else if (state === 'failed') {
      await batches.fail(b.id, [notProcessed()]);
    }
  }

  /** Cancelled jobs leave the queue and their streams end, so their followers are told. */
  private async close(step: CancelledBatchJobs): Promise<void> {
    const { batches, producer, events } = this.options;
    await closeBatchJobs({ batches, producer, events }, step);
  }

  /** One pass; returns how many batches it finalized. */
  protected async pass(): Promise<number> {
    const { batches, logger } = this.options;
    const stale = await batches.staleValidating(new Date(Date.now() - this.options.graceMs), 100);
    for (const b of stale) await this.revive(b);
    for (const expired of await batches.expireDue(10)) {
      logger.info({ batchId: expired.batchId, cancelled: expired.cancelledJobIds.length }, 'batch expired');
      await this.close(expired);
    }
    for (const late of await batches.cancelRequeued()) {
      logger.info(
        { batchId: late.batchId, cancelled: late.cancelledJobIds.length },
        'requeued batch jobs cancelled',
      );
      await this.close(late);
    }
    await batches.startFinalizing();
    return this.finalize();
  }

  private async finalize(): Promise<number> {
    const { batches, logger } = this.options;
    const maxBytes = this.options.maxOutputBytes ?? OUTPUT_MAX_BYTES;
    const build = (batch: BatchRecord, results: BatchResult[]) => buildOutputs(batch, results, maxBytes);
    let finalized = 0;
    for (let tried = 0; tried < (this.options.maxPerPass ?? 20); tried++) {
      const outcome = await batches.finalizeNext(build, this.options.finalize);
      if (!outcome) break;
      if (outcome.ok) {
        finalized++;
        logger.info({ batchId: outcome.batch.id, status: outcome.batch.status }, 'batch finalized');
      } else {
        const { batchId, error: err, attempts, failed } = outcome;
        logger.warn({ batchId, err, attempts, failed }, 'batch finalization failed');
      }
    }
    return finalized;
  }
}
