import {
  chatCompletionRequestSchema,
  chatCompletionToGenerateRequest,
  completionId,
  finishReasonOf,
  toChatCompletion,
  type ChatCompletionRequest,
  type Usage,
} from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import { Router, type Request, type Response } from 'express';
import type { ApiDeps } from '../deps';
import { fromZod } from '../errors';
import { followJob } from '../follow';
import { jobErrorToOpenAi, toOpenAiError, type OpenAiErrorBody } from './errors';
import { abandonJob, jsonBody, submitJob, waitForEnd } from './jobs';
import { openSse, watchClient, type ClientWatch } from './sse';
import { DeltaFilter } from './text-deltas';

const NO_USAGE: Usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };

/**
 * `POST /chat/completions`: OpenAI's chat completions, each one a queued job. The answer waits
 * for the job (or streams it as `chat.completion.chunk` events); a client that goes away first
 * cancels the job, unless the request said `background: true`.
 */
export function chatCompletionsRouter(deps: ApiDeps, streams: Set<Response>): Router {
  const router = Router();
  router.post('/chat/completions', ...jsonBody(deps), async (req, res) => {
    // Before the submission: a client that leaves while it is admitted is seen too.
    const client = watchClient(res);
    const parsed = chatCompletionRequestSchema.safeParse(req.body);
    if (!parsed.success) throw fromZod(parsed.error);
    const body = parsed.data;
    const { job, cancelOnDisconnect } = await submitJob(
      deps,
      req,
      res,
      chatCompletionToGenerateRequest(body),
    );
    if (body.background !== true && cancelOnDisconnect) client.onGone(() => abandonJob(deps, job, req.log));
    if (client.gone) return;
    if (body.stream === true) await streamCompletion(deps, streams, req, res, job, body);
    else await answerCompletion(deps, res, job, client);
  });
  return router;
}

/** OpenAI's service tier of a job: the batch tier is what OpenAI calls flex. */
export const serviceTierOf = (job: JobRecord) => (job.priority === 'batch' ? 'flex' : 'default');

async function answerCompletion(deps: ApiDeps, res: Response, job: JobRecord, client: ClientWatch) {
  const end = await waitForEnd(deps, job, client);
  if (end === null) return;
  switch (end.type) {
    case 'completed':
      res.json({
        ...toChatCompletion({
          jobId: job.id,
          model: job.model,
          createdAt: job.createdAt,
          result: end.result,
          finishReason: end.finishReason,
          usage: end.usage,
        }),
        service_tier: serviceTierOf(job),
      });
      return;
    case 'failed': {
      const { status, body, headers } = jobErrorToOpenAi(end.error);
      res.status(status).set(headers).json(body);
      return;
    }
    case 'cancelled':
      // Cancelled elsewhere (DELETE /api/jobs/:id): the same request would not be, so no retry.
      res.status(409).set('x-should-retry', 'false').json(cancelledError(job.id));
      return;
  }
}

/**
 * The answer as `chat.completion.chunk` events: the role first, a chunk per token event, the
 * finish reason, the usage when `stream_options.include_usage` asks, then `[DONE]`. A job that
 * fails midway ends the stream with an error frame, which the SDKs raise.
 */
async function streamCompletion(
  deps: ApiDeps,
  streams: Set<Response>,
  req: Request,
  res: Response,
  job: JobRecord,
  body: ChatCompletionRequest,
): Promise<void> {
  const includeUsage = body.stream_options?.include_usage === true;
  const head = {
    id: completionId(job.id),
    object: 'chat.completion.chunk',
    created: Math.floor(job.createdAt.getTime() / 1000),
    model: job.model,
    service_tier: serviceTierOf(job),
    system_fingerprint: null,
  };
  const chunk = (delta: object, finishReason: string | null) => ({
    ...head,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    // OpenAI sends `usage: null` on every chunk but the last when usage was asked for.
    ...(includeUsage ? { usage: null } : {}),
  });

  let stop: (() => void) | null = null;
  const sse = openSse(deps, res, streams, {
    onClose: () => stop?.(),
    farewell: () => `data: ${JSON.stringify(interruptedError(job.id))}\n\n`,
  });
  const fail = (error: OpenAiErrorBody) => {
    sse.send(error);
    sse.end();
  };
  sse.send(chunk({ role: 'assistant', content: '' }, null));
  const text = new DeltaFilter();
  try {
    stop = await followJob(deps, job, 0, (event) => {
      if (sse.closed) return;
      switch (event.type) {
        case 'status':
          if (event.restarted) text.restart();
          return;
        case 'token': {
          const delta = text.push(event.text);
          if (delta === null) return fail(restartedError(job.id));
          if (delta !== '') sse.send(chunk({ content: delta }, null));
          return;
        }
        case 'completed':
          sse.send(chunk({}, finishReasonOf(event.finishReason)));
          if (includeUsage) sse.send({ ...head, choices: [], usage: event.usage ?? NO_USAGE });
          sse.send('[DONE]');
          sse.end();
          return;
        case 'failed':
          return fail(jobErrorToOpenAi(event.error).body);
        case 'cancelled':
          return fail(cancelledError(job.id));
      }
    });
    if (sse.closed) stop();
  } catch (error) {
    req.log.warn({ err: error }, 'stream follow failed');
    fail(toOpenAiError(error).body);
  }
}

function cancelledError(jobId: string): OpenAiErrorBody {
  return {
    error: {
      message: `the job ${jobId} was cancelled`,
      type: 'invalid_request_error',
      param: null,
      code: 'job_cancelled',
    },
  };
}

function restartedError(jobId: string): OpenAiErrorBody {
  return {
    error: {
      message: `the job restarted after its worker was lost, and its new text differs from what was streamed; the final answer will be at /api/jobs/${jobId}`,
      type: 'server_error',
      param: null,
      code: 'stream_restarted',
    },
  };
}

function interruptedError(jobId: string): OpenAiErrorBody {
  return {
    error: {
      message: `the server is shutting down; the job goes on, its answer will be at /api/jobs/${jobId}`,
      type: 'server_error',
      param: null,
      code: 'server_shutting_down',
    },
  };
}
