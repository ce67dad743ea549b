/**
 * Types of the xk6-sse extension (https://github.com/phymbert/xk6-sse), which @types/k6 does not
 * cover: `sse.open` blocks the iteration while the stream is open, calling the handlers.
 */
declare module 'k6/x/sse' {
  export interface SseParams {
    /** GET by default. */
    method?: string;
    headers?: { [name: string]: string };
    body?: string;
    tags?: { [name: string]: string };
  }

  /** One event; a frame with only a comment (a heartbeat) arrives with empty name and data. */
  export interface SseEvent {
    id: string;
    name: string;
    data: string;
    comment: string;
  }

  export interface SseError {
    error(): string;
  }

  export interface SseClient {
    on(event: 'open', handler: () => void): void;
    on(event: 'event', handler: (event: SseEvent) => void): void;
    on(event: 'error', handler: (error: SseError) => void): void;
    /** Ends the stream; `sse.open` then returns. */
    close(): void;
  }

  /** `error` is set (and the rest empty) when the connection could not be made. */
  export interface SseResponse {
    url: string;
    status: number;
    headers: { [name: string]: string };
    error: string;
  }

  const sse: {
    open(url: string, params: SseParams, setup: (client: SseClient) => void): SseResponse;
    open(url: string, setup: (client: SseClient) => void): SseResponse;
  };
  export default sse;
}
