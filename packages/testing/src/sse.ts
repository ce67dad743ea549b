export interface SseEvent {
  id: string | null;
  event: string;
  data: string;
}

export interface ReadSseOptions {
  headers?: Record<string, string>;
  /** Stop (and close the connection) once this returns true for an event. */
  until?: (event: SseEvent, all: SseEvent[]) => boolean;
  /** @defaultValue 30000 */
  timeoutMs?: number;
  /** Called as each event arrives. */
  onEvent?: (event: SseEvent) => void;
  /** Called with each raw chunk of text (comments included). */
  onRaw?: (text: string) => void;
  /** Stop (and close) once this returns true, checked after every chunk. */
  stopWhen?: () => boolean;
}

export interface SseResult {
  status: number;
  headers: Headers;
  events: SseEvent[];
  /** Raw text, including comments such as heartbeats. */
  raw: string;
  /** True when the server ended the stream (rather than `until` or the timeout stopping it). */
  ended: boolean;
}

/** A small spec-following SSE client on fetch, for tests (EventSource is not in Node 20). */
export async function readSse(url: string, options: ReadSseOptions = {}): Promise<SseResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error('timeout')), options.timeoutMs ?? 30_000);
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', ...options.headers },
    signal: controller.signal,
  });
  const events: SseEvent[] = [];
  let raw = '';
  let ended = false;
  if (!response.ok || !response.body) {
    clearTimeout(timer);
    return {
      status: response.status,
      headers: response.headers,
      events,
      raw: await response.text(),
      ended: true,
    };
  }
  const decoder = new TextDecoder();
  let buffer = '';
  let current: SseEvent = { id: null, event: 'message', data: '' };
  let dataLines: string[] = [];
  try {
    outer: for await (const chunk of response.body) {
      const text = decoder.decode(chunk as Uint8Array, { stream: true });
      raw += text;
      buffer += text;
      options.onRaw?.(text);
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, '');
        buffer = buffer.slice(nl + 1);
        if (line === '') {
          if (dataLines.length > 0) {
            current.data = dataLines.join('\n');
            events.push(current);
            options.onEvent?.(current);
            if (options.until?.(current, events)) {
              controller.abort();
              break outer;
            }
          }
          current = { id: null, event: 'message', data: '' };
          dataLines = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') current.id = value;
        else if (field === 'event') current.event = value;
        else if (field === 'data') dataLines.push(value);
      }
      if (options.stopWhen?.()) {
        controller.abort();
        break;
      }
    }
    ended = !controller.signal.aborted;
  } catch (error) {
    if (!controller.signal.aborted) throw error;
    if (controller.signal.reason instanceof Error && controller.signal.reason.message === 'timeout') {
      throw new Error(`SSE read timed out after ${events.length} events: ${raw.slice(-500)}`);
    }
  } finally {
    clearTimeout(timer);
  }
  return { status: response.status, headers: response.headers, events, raw, ended };
}
