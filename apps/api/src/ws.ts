/**
 * The WebSocket gateway at `/ws` (docs/websocket.md): the envelope protocol of the seed gateways
 * (PROMPT → ACK, TOKEN…, COMPLETE | ERROR) over llmq's queue. Every prompt is a job like any
 * other (limits, priorities, cache, fleet); this file only carries it over a socket: auth at the
 * upgrade, a per-connection task bound, heartbeats, and a send buffer that stays bounded
 * however slowly a client reads.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { isTerminalEvent } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Principal } from './auth';
import { cancelJob } from './cancel';
import type { WsSettings } from './config';
import type { ApiDeps } from './deps';
import { HttpError, notFound, serviceUnavailable, toHttpError } from './errors';
import { followJob } from './follow';
import { isJobId, jobPaths } from './routes/views';
import { submitGeneration } from './submissions';
import {
  eventMessage,
  parseClientMessage,
  refusalMessage,
  withRef,
  type ClientMessage,
  type Ref,
  type ServerMessage,
  type ServerType,
} from './ws-protocol';

export const WS_PATH = '/ws';
/** The subprotocol the server selects; browsers send the key as a second one, `bearer.<key>`. */
export const WS_SUBPROTOCOL = 'llmq';
const BEARER_PROTOCOL = 'bearer.';

/** Close codes (RFC 6455 7.4.1). */
const CLOSE = { goingAway: 1001, policy: 1008 } as const;
/** How long a key's record (its limits, its revocation) is trusted, as the REST auth cache does. */
const PRINCIPAL_RECHECK_MS = 5000;
/** Messages a connection may have in progress before the server stops reading from it. */
const MAX_OPERATIONS = 8;
/** On shutdown, how long clients get to answer the 1001 close before their sockets are cut. */
const CLOSE_GRACE_MS = 2000;

type CloseReason =
  | 'client'
  | 'heartbeat'
  | 'slow_consumer'
  | 'message_too_large'
  | 'unauthorized'
  | 'protocol_error'
  | 'shutdown';

export interface WsGateway {
  /** The HTTP server's `upgrade` listener. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Refuses new connections (503), closes the open ones with 1001 and resolves once they are gone. */
  close(): Promise<void>;
}

export function createWsGateway(deps: ApiDeps, settings: WsSettings): WsGateway {
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    maxPayload: settings.maxPayloadBytes,
    perMessageDeflate: false,
    // Only `llmq` is ever selected: the `bearer.<key>` protocol must never be echoed back.
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  const connections = new Set<Connection>();
  let closing = false;
  let sequence = 0;
  const heartbeat = setInterval(() => {
    for (const connection of connections) connection.heartbeat();
  }, settings.heartbeatMs).unref();

  const accept = (req: IncomingMessage, socket: Duplex, head: Buffer, principal: Principal) => {
    if (closing) return rejectUpgrade(socket, serviceUnavailable('the server is shutting down'));
    wss.handleUpgrade(req, socket, head, (ws) => {
      const log = deps.logger.child({ ws: ++sequence, tenant: principal.tenantId });
      const connection = new Connection(deps, settings, ws, principal, log);
      connections.add(connection);
      ws.once('close', () => connections.delete(connection));
    });
  };

  return {
    handleUpgrade(req, socket, head) {
      socket.on('error', () => socket.destroy());
      // Not `new URL`: it throws on some request targets, and this runs outside any error handler.
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (path !== WS_PATH) {
        return rejectUpgrade(
          socket,
          new HttpError(404, 'route_not_found', `no WebSocket endpoint at ${path}`),
        );
      }
      if (closing) return rejectUpgrade(socket, serviceUnavailable('the server is shutting down'));
      authenticate(deps, req).then(
        (principal) => accept(req, socket, head, principal),
        (error: unknown) => {
          const { problem, unexpected } = toHttpError(error);
          if (unexpected) deps.logger.error({ err: error }, 'WebSocket upgrade failed');
          rejectUpgrade(socket, problem);
        },
      );
    },
    async close() {
      closing = true;
      clearInterval(heartbeat);
      const open = [...connections];
      for (const c of open) c.shutdown(CLOSE.goingAway, 'server shutting down', 'shutdown');
      const grace = new Promise((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref());
      await Promise.race([Promise.all(open.map((c) => c.closed)), grace]);
      for (const c of open) c.terminate('shutdown');
      await Promise.all(open.map((c) => c.closed));
    },
  };
}

/**
 * The key of an upgrade request: `Authorization: Bearer <key>`, or for browsers (which cannot
 * set headers) the subprotocol `bearer.<key>` next to `llmq`. Looked up in Postgres, which also
 * refuses a revoked key; nothing is upgraded without a valid one.
 */
async function authenticate(deps: ApiDeps, req: IncomingMessage): Promise<Principal> {
  const key = bearerOf(req);
  const record = await deps.apiKeys.findActive(key).catch((err: unknown) => {
    deps.logger.warn({ err }, 'WebSocket auth: API key lookup failed');
    throw serviceUnavailable('cannot check the API key now; retry shortly');
  });
  if (!record) throw unauthorized('invalid or revoked API key');
  return { tenantId: record.tenantId, apiKeyId: record.id, record };
}

function bearerOf(req: IncomingMessage): string {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw unauthorized('Authorization header must be "Bearer <api key>"');
    return match[1] as string;
  }
  const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  const offered = protocols.find((p) => p.startsWith(BEARER_PROTOCOL));
  if (offered && offered.length > BEARER_PROTOCOL.length) return offered.slice(BEARER_PROTOCOL.length);
  throw unauthorized(
    `missing API key: send "Authorization: Bearer <api key>" or the subprotocols "${WS_SUBPROTOCOL}, ${BEARER_PROTOCOL}<api key>"`,
  );
}

function unauthorized(detail: string): HttpError {
  return new HttpError(401, 'unauthorized', detail, {
    headers: { 'WWW-Authenticate': 'Bearer realm="llmq"' },
  });
}

/** Answers an upgrade request with a problem (RFC 9457) instead of a handshake, and hangs up. */
function rejectUpgrade(socket: Duplex, problem: HttpError): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const title = STATUS_CODES[problem.status] ?? 'Error';
  const body = JSON.stringify({
    type: `https://llmq.dev/problems/${problem.code}`,
    title,
    status: problem.status,
    detail: problem.message,
    code: problem.code,
  });
  const headers = {
    Connection: 'close',
    'Content-Type': 'application/problem+json',
    'Content-Length': String(Buffer.byteLength(body)),
    ...problem.extra.headers,
  };
  const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${problem.status} ${title}\r\n${head.join('')}\r\n${body}`);
}

/** One client connection: its tasks, its outgoing messages, its liveness. */
class Connection {
  /** Resolves once the socket is closed and everything of the connection is released. */
  readonly closed: Promise<void>;
  private alive = true;
  /** Why the connection ends, once that is decided (counted then: a closing handshake may take long). */
  private ending: CloseReason | null = null;
  /** Prompts accepted and not finished (submitting, queued or running): the per-connection bound. */
  private inFlight = 0;
  /** Messages being handled; at MAX_OPERATIONS the socket is not read. */
  private operations = 0;
  /** How to stop following each task's events when the connection goes. */
  private readonly followers = new Set<{ stop: () => void }>();
  private readonly outbox: Outbox;
  private checkedAt = performance.now();

  constructor(
    private readonly deps: ApiDeps,
    private readonly settings: WsSettings,
    private readonly socket: WebSocket,
    private principal: Principal,
    private readonly log: Logger,
  ) {
    deps.metrics.wsConnections.inc();
    this.outbox = new Outbox(socket, {
      highWaterBytes: settings.highWaterBytes,
      maxBufferedBytes: settings.maxBufferedBytes,
      onSent: (type) => deps.metrics.wsMessages.inc({ direction: 'out', type }),
      onOverflow: (bytes) => {
        this.log.warn({ bytes }, 'WebSocket client too slow: closing its connection');
        this.shutdown(CLOSE.policy, 'slow consumer: send buffer limit reached', 'slow_consumer');
      },
    });
    socket.on('message', (data, isBinary) => this.receive(data, isBinary));
    socket.on('pong', () => {
      this.alive = true;
    });
    socket.on('error', (error: Error & { code?: string }) => {
      // ws has already answered (1009 for a frame past maxPayload, 1002 for a protocol error).
      this.end(error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'message_too_large' : 'protocol_error');
      this.log.info({ err: error }, 'WebSocket protocol error');
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', (code) => {
        this.outbox.discard();
        // The jobs go on: their results stay readable at /api/jobs/:id (docs/websocket.md).
        for (const f of this.followers) f.stop();
        this.followers.clear();
        this.end('client');
        deps.metrics.wsConnections.dec();
        this.log.debug({ code, reason: this.ending }, 'WebSocket closed');
        resolve();
      });
    });
  }

  /** Called every heartbeat interval: a connection that did not answer the last ping is dropped. */
  heartbeat(): void {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    if (!this.alive) {
      this.log.info('WebSocket client did not answer a ping: dropping the connection');
      this.terminate('heartbeat');
      return;
    }
    this.alive = false;
    if (this.socket.readyState === WebSocket.OPEN) this.socket.ping();
  }

  /**
   * A closing handshake: the frame goes out after what is already buffered, nothing more is sent.
   * A client that never answers it is cut by ws after 30 s, or by the next heartbeats.
   */
  shutdown(code: number, message: string, reason: CloseReason): void {
    if (this.socket.readyState !== WebSocket.OPEN) return;
    this.end(reason);
    this.outbox.discard();
    this.socket.close(code, message);
  }

  terminate(reason: CloseReason): void {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    this.end(reason);
    this.socket.terminate();
  }

  /** Records why the connection ends: the first reason decided is the one counted. */
  private end(reason: CloseReason): void {
    if (this.ending !== null) return;
    this.ending = reason;
    this.deps.metrics.wsCloses.inc({ reason });
  }

  private send(message: ServerMessage): void {
    this.outbox.push(message);
  }

  private receive(data: RawData, isBinary: boolean): void {
    // `ws` still delivers frames while a close is under way: a PROMPT then would make a job
    // whose ACK can never reach the client.
    if (this.ending !== null || this.socket.readyState !== WebSocket.OPEN) return;
    if (isBinary) {
      this.deps.metrics.wsMessages.inc({ direction: 'in', type: 'invalid' });
      this.send({
        type: 'ERROR',
        code: 'unsupported_media_type',
        message: 'binary frames are not supported: send JSON text',
      });
      return;
    }
    const parsed = parseClientMessage(data.toString());
    if ('refusal' in parsed) {
      this.deps.metrics.wsMessages.inc({ direction: 'in', type: 'invalid' });
      this.send({ type: 'ERROR', ...parsed.refusal });
      return;
    }
    this.deps.metrics.wsMessages.inc({ direction: 'in', type: parsed.message.type });
    this.track(this.handle(parsed.message));
  }

  /** Stops reading the socket while too many messages are in progress (TCP then pushes back). */
  private track(operation: Promise<void>): void {
    if (++this.operations >= MAX_OPERATIONS) this.socket.pause();
    operation
      .catch((err: unknown) => this.log.error({ err }, 'WebSocket message failed'))
      .finally(() => {
        if (--this.operations < MAX_OPERATIONS && this.socket.isPaused) this.socket.resume();
      });
  }

  private async handle(message: ClientMessage): Promise<void> {
    switch (message.type) {
      case 'PROMPT':
        return this.prompt(message);
      case 'CANCEL':
        return this.cancel(message);
      case 'SUBSCRIBE':
        return this.subscribe(message);
      case 'PING':
        return this.send({ type: 'PONG', ...withRef(message.id) });
    }
  }

  /**
   * Takes a place in the connection's task bound: the function that gives it back (once), or
   * null when the bound is reached (the client was told RATE_LIMITED).
   */
  private claimTask(id: Ref | undefined): (() => void) | null {
    const limit = this.settings.maxTasksPerConnection;
    if (this.inFlight >= limit) {
      this.send({
        type: 'RATE_LIMITED',
        ...withRef(id),
        code: 'too_many_tasks',
        message: `this connection has ${this.inFlight} tasks in flight, its limit is ${limit}; send more when one finishes`,
        retryAfterMs: null,
      });
      return null;
    }
    this.inFlight++;
    let released = false;
    return () => {
      if (!released) this.inFlight--;
      released = true;
    };
  }

  private async prompt(message: Extract<ClientMessage, { type: 'PROMPT' }>): Promise<void> {
    const { id } = message;
    const release = this.claimTask(id);
    if (!release) return;
    let taskId: string | undefined;
    try {
      const principal = await this.currentPrincipal();
      const result = await submitGeneration(this.deps, principal, this.log, {
        body: message.body,
        idempotencyKey: message.idempotencyKey,
      });
      taskId = result.jobId;
      const queueDepth = await this.deps.queueDepth
        .current(message.body.priority ?? 'interactive')
        .catch(() => null);
      const status =
        result.kind === 'cached' ? 'completed' : result.kind === 'replayed' ? result.status : 'queued';
      this.send({ type: 'ACK', ...withRef(id), taskId, status, queueDepth, ...jobPaths(taskId) });
      const job = await this.deps.jobs.getForTenant(taskId, this.principal.tenantId);
      if (!job) throw notFound('task');
      await this.follow(job, id, release, 0);
    } catch (error) {
      release();
      this.refuse(error, id, taskId);
    }
  }

  /**
   * Follows one of the tenant's tasks again, from any connection: after a reconnect, the client
   * sends the last `seq` it saw and gets the rest, to the end (a finished task replays from
   * Postgres). Answered with an ACK like a PROMPT; it counts toward the connection's task bound.
   */
  private async subscribe(message: Extract<ClientMessage, { type: 'SUBSCRIBE' }>): Promise<void> {
    const { id, taskId } = message;
    const release = this.claimTask(id);
    if (!release) return;
    try {
      const principal = await this.currentPrincipal();
      const job = isJobId(taskId) ? await this.deps.jobs.getForTenant(taskId, principal.tenantId) : null;
      if (!job) throw notFound('task');
      const queueDepth = await this.deps.queueDepth.current(job.priority).catch(() => null);
      this.send({ type: 'ACK', ...withRef(id), taskId, status: job.status, queueDepth, ...jobPaths(taskId) });
      await this.follow(job, id, release, message.afterSeq ?? 0);
    } catch (error) {
      release();
      this.refuse(error, id, taskId);
    }
  }

  /** Sends a task's events after `afterSeq` until its end; the task then frees its place in the connection's bound. */
  private async follow(
    job: JobRecord,
    id: Ref | undefined,
    release: () => void,
    afterSeq: number,
  ): Promise<void> {
    const taskId = job.id;
    let stop: (() => void) | null = null;
    let ended = false;
    const follower = { stop: () => stop?.() };
    this.followers.add(follower);
    try {
      stop = await followJob(this.deps, job, afterSeq, (event) => {
        this.send(eventMessage(taskId, id, event));
        if (!isTerminalEvent(event)) return;
        ended = true;
        release();
        this.followers.delete(follower);
      });
    } catch (error) {
      this.followers.delete(follower);
      throw error;
    }
    // Ended while the backlog was delivered, a finished task had nothing after `afterSeq` (the
    // client has it all), or the connection went meanwhile.
    if (ended || job.events || this.socket.readyState !== WebSocket.OPEN) {
      stop();
      release();
      this.followers.delete(follower);
    }
  }

  private async cancel(message: Extract<ClientMessage, { type: 'CANCEL' }>): Promise<void> {
    const { id, taskId } = message;
    try {
      const principal = await this.currentPrincipal();
      if (!isJobId(taskId)) throw notFound('task');
      const job = await this.deps.jobs.getForTenant(taskId, principal.tenantId);
      if (!job) throw notFound('task');
      const now = await cancelJob(this.deps, job, this.log.child({ jobId: taskId }));
      this.send({ type: 'CANCELLED', ...withRef(id), taskId, status: now.status });
    } catch (error) {
      this.refuse(error, id, taskId);
    }
  }

  /** The connection's key, re-read now and then so new limits apply and a revoked key stops. */
  private async currentPrincipal(): Promise<Principal> {
    if (performance.now() - this.checkedAt < PRINCIPAL_RECHECK_MS) return this.principal;
    const record = await this.deps.apiKeys.get(this.principal.apiKeyId).catch((err: unknown) => {
      this.log.warn({ err }, 'WebSocket auth: API key lookup failed');
      throw serviceUnavailable('cannot check the API key now; retry shortly');
    });
    if (!record || record.revokedAt !== null) throw unauthorized('invalid or revoked API key');
    this.principal = { tenantId: record.tenantId, apiKeyId: record.id, record };
    this.checkedAt = performance.now();
    return this.principal;
  }

  /** Answers a refused message; a revoked key also ends the connection. */
  private refuse(error: unknown, id: Ref | undefined, taskId: string | undefined): void {
    const { problem, unexpected } = toHttpError(error);
    if (unexpected) this.log.error({ err: error }, 'WebSocket message failed');
    this.send(refusalMessage(problem, id, taskId));
    if (problem.status === 401) this.shutdown(CLOSE.policy, 'invalid or revoked API key', 'unauthorized');
  }
}

interface OutboxOptions {
  highWaterBytes: number;
  maxBufferedBytes: number;
  onSent: (type: ServerType) => void;
  /** The client is too far behind: `bytes` wait for it. */
  onOverflow: (bytes: number) => void;
}

interface Queued {
  message: ServerMessage;
  bytes: number;
}

/**
 * A connection's outgoing messages, bounded however slowly its client reads. While fewer than
 * `highWaterBytes` wait in the socket's buffers, a message is written at once. Above that, the
 * server stops writing: messages wait here in order, and each task's waiting TOKENs are joined
 * into one, so a stalled task costs its output's size rather than a frame per token. The queue
 * is written out as the socket drains (each write's callback). Once more than
 * `maxBufferedBytes` wait in all (here and in the socket), `onOverflow` is told: memory per
 * connection never passes that cap by more than one message.
 */
class Outbox {
  private readonly queue: Queued[] = [];
  private queuedBytes = 0;
  /** Per task, its TOKEN waiting in the queue with nothing of that task after it: later text joins it. */
  private readonly openTokens = new Map<string, Queued>();
  private discarded = false;

  constructor(
    private readonly socket: WebSocket,
    private readonly o: OutboxOptions,
  ) {}

  push(message: ServerMessage): void {
    if (this.discarded || this.socket.readyState !== WebSocket.OPEN) return;
    if (this.queue.length === 0 && this.socket.bufferedAmount < this.o.highWaterBytes) {
      this.write(message);
      return;
    }
    this.enqueue(message);
    const pending = this.socket.bufferedAmount + this.queuedBytes;
    if (pending > this.o.maxBufferedBytes) this.o.onOverflow(pending);
  }

  /** Drops everything waiting; nothing is sent any more. */
  discard(): void {
    this.discarded = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.openTokens.clear();
  }

  private enqueue(message: ServerMessage): void {
    if (message.type === 'TOKEN') {
      const open = this.openTokens.get(message.taskId);
      if (open?.message.type === 'TOKEN') {
        const added = Buffer.byteLength(message.text);
        open.message.text += message.text;
        open.message.seq = message.seq;
        open.bytes += added;
        this.queuedBytes += added;
        return;
      }
      const entry = { message: { ...message }, bytes: sizeOf(message) };
      this.openTokens.set(message.taskId, entry);
      this.append(entry);
      return;
    }
    if ('taskId' in message && message.taskId !== undefined) this.openTokens.delete(message.taskId);
    this.append({ message, bytes: sizeOf(message) });
  }

  private append(entry: Queued): void {
    this.queue.push(entry);
    this.queuedBytes += entry.bytes;
  }

  private readonly flush = (): void => {
    while (
      this.queue.length > 0 &&
      !this.discarded &&
      this.socket.readyState === WebSocket.OPEN &&
      this.socket.bufferedAmount < this.o.highWaterBytes
    ) {
      const entry = this.queue.shift() as Queued;
      this.queuedBytes -= entry.bytes;
      const { message } = entry;
      if (message.type === 'TOKEN' && this.openTokens.get(message.taskId) === entry) {
        this.openTokens.delete(message.taskId);
      }
      this.write(message);
    }
  };

  private write(message: ServerMessage): void {
    // The callback runs once the frame is handed to the kernel: room again, so the queue moves.
    this.socket.send(JSON.stringify(message), this.written);
    this.o.onSent(message.type);
  }

  private readonly written = (error?: Error): void => {
    if (!error && this.queue.length > 0) this.flush();
  };
}

/** About what a message takes once serialized: its text in bytes plus the envelope around it. */
function sizeOf(message: ServerMessage): number {
  const ENVELOPE = 256;
  switch (message.type) {
    case 'TOKEN':
      return ENVELOPE + Buffer.byteLength(message.text);
    case 'COMPLETE':
      return ENVELOPE + Buffer.byteLength(message.result);
    case 'ERROR':
    case 'RATE_LIMITED':
      return ENVELOPE + Buffer.byteLength(message.message);
    case 'ACK':
    case 'STATUS':
    case 'CANCELLED':
    case 'PONG':
      return ENVELOPE;
  }
}
