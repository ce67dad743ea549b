import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, type ErrorDialect } from './errors';
import type { Outcome, RequestKind, Stats } from './stats';

export const MAX_BODY_BYTES = 2 * 1024 * 1024;

/** Reads and parses a JSON body of at most MAX_BODY_BYTES; rejects with an ApiError. */
export function readJsonBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length']) > MAX_BODY_BYTES) {
      // Drain rather than destroy, so the client gets to read the 413 instead of a reset.
      req.resume();
      reject(ApiError.tooLarge(MAX_BODY_BYTES));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      const overflowed = size > MAX_BODY_BYTES;
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else if (!overflowed) {
        // Keep reading (and dropping) the rest so the client gets to read the 413.
        chunks.length = 0;
        reject(ApiError.tooLarge(MAX_BODY_BYTES));
      }
    });
    req.on('error', reject);
    req.on('close', () => {
      if (!req.complete) reject(ApiError.invalidRequest('The request body was not received in full.'));
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) return;
      try {
        resolve(JSON.parse(Buffer.concat(chunks, size).toString('utf8')));
      } catch {
        reject(
          ApiError.invalidRequest(
            'We could not parse the JSON body of your request. The API expects a JSON payload.',
          ),
        );
      }
    });
  });
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

export function sendError(res: ServerResponse, error: ApiError, dialect: ErrorDialect = 'openai'): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = dialect === 'anthropic' ? error.toAnthropicBody() : error.toBody();
  sendJson(res, error.status, body, error.headers);
}

/**
 * Follows one accepted request to exactly one outcome. A response that closes before it
 * finished is the one reliable sign that the client went away, whatever the reason: the
 * pending timers are cancelled at once so an abandoned stream costs nothing.
 */
export class Exchange {
  private settled = false;
  private cancel: (() => void) | undefined;

  constructor(
    readonly res: ServerResponse,
    private readonly stats: Stats,
    kind: RequestKind,
  ) {
    stats.accept(kind);
    res.once('finish', () => this.settle('completed'));
    res.once('close', () => {
      if (this.settled) return;
      this.settle('aborted');
      this.cancel?.();
    });
  }

  /** Registers what to stop (timers) if the client disconnects. */
  onAbort(cancel: () => void): void {
    this.cancel = cancel;
  }

  /** Records the outcome; the first call wins, later ones (and `finish`) are ignored. */
  settle(outcome: Outcome): void {
    if (this.settled) return;
    this.settled = true;
    this.stats.settle(outcome);
  }

  /** Ends the exchange on purpose with a dead connection: the client sees a reset, no response. */
  cut(): void {
    this.settle('faulted');
    this.res.destroy();
  }
}
