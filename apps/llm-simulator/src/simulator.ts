import { randomUUID } from 'node:crypto';
import {
  createServer,
  validateHeaderValue,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeFault, parseFaultUpdate } from './admin';
import { answerChat, parseChatRequest, streamChat } from './chat';
import { readControls, SIMULATOR_HEADERS, type Controls } from './controls';
import { Embedder, embeddingsResponse, parseEmbeddingsRequest } from './embeddings';
import { ApiError, simulatedStatusError, type ErrorDialect } from './errors';
import { FaultSampler, type FaultAction, type FaultSpec } from './faults';
import { paceFor, type Generation } from './generation';
import { Exchange, readJsonBody, sendError, sendJson } from './http';
import { answerMessage, parseMessagesRequest, streamMessage } from './messages';
import { Stats, type RequestKind, type SimulatorStats } from './stats';
import { generateCompletion, type CompletionRequest } from './text';

export interface SimulatorOptions {
  /**
   * The instance's name, sent as `x-simulator-instance` on every response and reported by
   * `/stats`, so that tests running several simulators can tell which one answered.
   * @defaultValue 'sim'
   */
  name?: string;
  /**
   * Milliseconds before the first content token.
   * @defaultValue 150
   */
  ttftMs?: number;
  /**
   * Milliseconds between content tokens.
   * @defaultValue 15
   */
  tokenMs?: number;
  /**
   * Each delay is scaled by a random factor in [1 - jitter, 1 + jitter].
   * @defaultValue 0.2
   */
  jitter?: number;
  /**
   * Upper bound of the natural answer length (in tokens) when a request sets no max_tokens.
   * @defaultValue 64
   */
  defaultMaxTokens?: number;
  /**
   * Chat models the simulator answers for; any other is a 404 `model_not_found`.
   * @defaultValue ['sim-small', 'sim-large']
   */
  models?: readonly string[];
  /**
   * Fault applied to every chat, messages and embeddings request without an
   * `x-simulator-fault` header (build one with `parseFaultSpec`). `POST /admin/fault` and
   * `setFault` replace it at run time.
   * @defaultValue undefined (no fault)
   */
  fault?: FaultSpec;
  /**
   * Length of embedding vectors.
   * @defaultValue 384
   */
  embeddingDim?: number;
}

export interface Simulator {
  readonly server: Server;
  /** Starts listening; port 0 picks a free one, reported back. */
  listen(port?: number, host?: string): Promise<{ port: number; url: string }>;
  /** Stops listening and drops every open connection; hung and streaming requests count as aborted. */
  close(): Promise<void>;
  stats(): SimulatorStats;
  resetStats(): void;
  /** Replaces the default fault, as `POST /admin/fault` does; undefined clears it. */
  setFault(fault: FaultSpec | undefined): void;
}

/** Fixed, so that model listings are identical from run to run. */
const MODELS_CREATED = 1_700_000_000;

/** Longer than the 4 s idle timeout of Node's fetch (undici), so the client always closes first. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** Room for thousands of simultaneous connects (the kernel may cap it lower: somaxconn). */
const LISTEN_BACKLOG = 4096;

/** The one route that answers in Anthropic's shapes rather than OpenAI's. */
const MESSAGES_PATH = '/v1/messages';

export function createSimulator(options: SimulatorOptions = {}): Simulator {
  const name = options.name ?? 'sim';
  // Fail here, once, rather than on every response.
  validateHeaderValue(SIMULATOR_HEADERS.instance, name);
  const timing = {
    ttftMs: options.ttftMs ?? 150,
    tokenMs: options.tokenMs ?? 15,
    jitter: options.jitter ?? 0.2,
  };
  const defaultMaxTokens = options.defaultMaxTokens ?? 64;
  const models = options.models ?? ['sim-small', 'sim-large'];
  const modelSet = new Set(models);
  const embedder = new Embedder(options.embeddingDim ?? 384);
  const stats = new Stats(name);
  const sampler = new FaultSampler();
  let defaultFault = options.fault;
  const live = new Set<ServerResponse>();

  /** Starts counting a request; `close()` waits for every response accepted here to close. */
  function accept(res: ServerResponse, kind: RequestKind): Exchange {
    live.add(res);
    res.once('close', () => live.delete(res));
    return new Exchange(res, stats, kind);
  }

  async function chat(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJsonBody(req);
    const controls = readControls(req.headers, timing, defaultFault);
    const request = parseChatRequest(body);
    if (!modelSet.has(request.model)) throw ApiError.modelNotFound(request.model);
    const exchange = accept(res, request.stream ? 'chatStream' : 'chat');
    const fault = decideFault(controls);
    if (fault && answerFault(exchange, fault.action, fault.source, 'openai')) return;
    const answer = { request, ...generation(request, controls, fault) };
    if (request.stream) streamChat(exchange, answer);
    else answerChat(exchange, answer);
  }

  async function messages(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('request-id', `req_${randomUUID().replaceAll('-', '')}`);
    const body = await readJsonBody(req);
    const controls = readControls(req.headers, timing, defaultFault);
    const request = parseMessagesRequest(body);
    if (!modelSet.has(request.model)) throw ApiError.anthropicModelNotFound(request.model);
    const exchange = accept(res, request.stream ? 'messagesStream' : 'messages');
    const fault = decideFault(controls);
    if (fault && answerFault(exchange, fault.action, fault.source, 'anthropic')) return;
    const answer = { request, ...generation(request, controls, fault) };
    if (request.stream) streamMessage(exchange, answer);
    else answerMessage(exchange, answer);
  }

  /** The answer's text and delivery, once no status or hang fault has replaced it. */
  function generation(
    request: CompletionRequest,
    controls: Controls,
    fault: FaultSpec | undefined,
  ): Generation {
    const streamFault = fault?.action.kind === 'stream' ? fault.action : undefined;
    if (streamFault?.cutAfter !== undefined) stats.fault('cut');
    if (streamFault?.trickleMs !== undefined) stats.fault('trickle');
    return {
      completion: generateCompletion(request, defaultMaxTokens),
      pace: paceFor(controls.timing, streamFault),
      headers: responseHeaders(fault?.source),
      stats,
    };
  }

  async function embeddings(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJsonBody(req);
    const controls = readControls(req.headers, timing, defaultFault);
    const request = parseEmbeddingsRequest(body, embedder.dimensions);
    const exchange = accept(res, 'embeddings');
    const fault = decideFault(controls);
    if (fault && answerFault(exchange, fault.action, fault.source, 'openai')) return;
    // Embeddings are not streamed: trickle means nothing here, and a cut leaves no answer at all.
    if (fault?.action.kind === 'stream' && fault.action.cutAfter !== undefined) {
      stats.fault('cut');
      return exchange.cut();
    }
    sendJson(res, 200, embeddingsResponse(embedder, request), responseHeaders(fault?.source));
  }

  function decideFault(controls: Controls): FaultSpec | undefined {
    return controls.fault && sampler.applies(controls.fault) ? controls.fault : undefined;
  }

  /** Answers the faults that replace the answer altogether; true if it did. */
  function answerFault(
    exchange: Exchange,
    action: FaultAction,
    source: string,
    dialect: ErrorDialect,
  ): boolean {
    switch (action.kind) {
      case 'status':
        stats.fault('status');
        exchange.settle('faulted');
        sendError(
          exchange.res,
          simulatedStatusError(action.status, action, responseHeaders(source)),
          dialect,
        );
        return true;
      case 'hang':
        // Never answer: the exchange stays in flight until the client gives up (counted aborted).
        stats.fault('hang');
        return true;
      case 'stream':
        return false;
      default:
        return assertNever(action);
    }
  }

  function setFault(fault: FaultSpec | undefined): void {
    defaultFault = fault;
    // So that `rate=0.5` set now hits the very next request, whatever ran with it before.
    if (fault) sampler.restart(fault);
  }

  async function updateFault(req: IncomingMessage, res: ServerResponse): Promise<void> {
    setFault(parseFaultUpdate(await readJsonBody(req)));
    sendJson(res, 200, describeFault(defaultFault));
  }

  function route(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> | void {
    switch (`${req.method} ${path}`) {
      case 'POST /v1/chat/completions':
        return chat(req, res);
      case `POST ${MESSAGES_PATH}`:
        return messages(req, res);
      case 'POST /v1/embeddings':
        return embeddings(req, res);
      case 'GET /v1/models':
        return sendJson(accept(res, 'models').res, 200, {
          object: 'list',
          data: models.map(describeModel),
        });
      case 'GET /health':
        return sendJson(res, 200, { status: 'ok' });
      case 'GET /stats':
        return sendJson(res, 200, stats.snapshot());
      case 'POST /stats/reset':
        resetStats();
        return sendJson(res, 200, stats.snapshot());
      case 'GET /admin/fault':
        return sendJson(res, 200, describeFault(defaultFault));
      case 'POST /admin/fault':
        return updateFault(req, res);
    }
    const id = req.method === 'GET' ? modelIdOf(path) : undefined;
    if (id === undefined) throw ApiError.invalidUrl(req.method ?? 'GET', path);
    if (!modelSet.has(id)) throw ApiError.modelNotFound(id);
    sendJson(accept(res, 'models').res, 200, describeModel(id));
  }

  function resetStats(): void {
    stats.reset();
    sampler.reset();
  }

  const server = createServer({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, (req, res) => {
    res.setHeader(SIMULATOR_HEADERS.instance, name);
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    Promise.resolve()
      .then(() => route(req, res, path))
      .catch((error: unknown) => {
        if (error instanceof ApiError && error.status < 500) stats.reject();
        const dialect = path === MESSAGES_PATH ? 'anthropic' : 'openai';
        sendError(res, error instanceof ApiError ? error : unexpected(error), dialect);
      });
  });

  return {
    server,
    listen: (port = 0, host = '127.0.0.1') => listen(server, port, host),
    close: () => close(server, live),
    stats: () => stats.snapshot(),
    resetStats,
    setFault,
  };
}

/** `/v1/models/{id}` → id (model ids may contain slashes, as in `org/model`). */
function modelIdOf(path: string): string | undefined {
  if (!path.startsWith('/v1/models/') || path.length === '/v1/models/'.length) return undefined;
  try {
    return decodeURIComponent(path.slice('/v1/models/'.length));
  } catch {
    return undefined;
  }
}

function describeModel(id: string): Record<string, string | number> {
  return { id, object: 'model', created: MODELS_CREATED, owned_by: 'llmq-simulator' };
}

function responseHeaders(faultSource: string | undefined): Record<string, string> {
  return faultSource === undefined ? {} : { [SIMULATOR_HEADERS.faultApplied]: faultSource };
}

function unexpected(error: unknown): ApiError {
  console.error('llm-simulator: unexpected error', error);
  return ApiError.internal('The simulator failed unexpectedly; see its stderr.');
}

function assertNever(value: never): never {
  throw new Error(`unhandled fault action ${JSON.stringify(value)}`);
}

function listen(server: Server, port: number, host: string): Promise<{ port: number; url: string }> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      const actual = (server.address() as AddressInfo).port;
      const urlHost = host.includes(':') ? `[${host}]` : host;
      resolve({ port: actual, url: `http://${urlHost}:${actual}` });
    });
  });
}

async function close(server: Server, live: ReadonlySet<ServerResponse>): Promise<void> {
  if (!server.listening) return;
  // Responses of destroyed connections emit `close` (settling as aborted) only after the
  // server's own close, so wait for them too: stats are final once close() resolves.
  const responsesClosed = [...live].map((res) => new Promise((resolve) => res.once('close', resolve)));
  await new Promise<void>((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
  await Promise.all(responsesClosed);
}
