import { createSimulator, type Simulator, type SimulatorOptions, type SimulatorStats } from '../src';

export interface RunningSimulator {
  readonly simulator: Simulator;
  readonly url: string;
}

/** Instant answers unless a test asks otherwise: timing is exercised by the tests that set it. */
export const FAST: SimulatorOptions = { ttftMs: 0, tokenMs: 0, jitter: 0 };

/** Starts a simulator on a free port and closes it after the current test file. */
export function useSimulator(options: SimulatorOptions = FAST): () => RunningSimulator {
  let running: RunningSimulator | undefined;
  beforeAll(async () => {
    const simulator = createSimulator(options);
    const { url } = await simulator.listen(0);
    running = { simulator, url };
  });
  beforeEach(() => running?.simulator.resetStats());
  afterAll(() => running?.simulator.close());
  return () => {
    if (!running) throw new Error('the simulator is not running yet');
    return running;
  };
}

export function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
}

export const USER_HELLO = [{ role: 'user', content: 'Say hello to the simulator.' }];

export interface ChatCompletion {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: { index: number; message: { role: string; content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

export async function completeChat(url: string, body: object, headers: Record<string, string> = {}) {
  const response = await post(`${url}/v1/chat/completions`, { model: 'sim-small', ...body }, headers);
  if (response.status !== 200)
    throw new Error(`expected 200, got ${response.status}: ${await response.text()}`);
  return (await response.json()) as ChatCompletion;
}

export interface StreamRead {
  /** The payload of every `data:` line, in order, with the moment it arrived. */
  readonly events: { data: string; at: number }[];
  /** Set when the body ended with an error (a cut connection) rather than cleanly. */
  readonly error: unknown;
}

/** Reads a server-sent-event body to its end, or to the error that ends it. */
export async function readEvents(response: Response, onEvent?: (data: string) => void): Promise<StreamRead> {
  const events: { data: string; at: number }[] = [];
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (!line.startsWith('data: ')) throw new Error(`not an SSE data line: ${line}`);
        events.push({ data: line.slice(6), at: Date.now() });
        onEvent?.(line.slice(6));
      }
    }
  } catch (error) {
    return { events, error };
  }
  if (buffered !== '') throw new Error(`stream ended mid-event: ${buffered}`);
  return { events, error: undefined };
}

export interface ChunkShape {
  id: string;
  object: string;
  model: string;
  choices: { index: number; delta: { role?: string; content?: string }; finish_reason: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
}

/** The JSON chunks of a stream, without the final `[DONE]`. */
export function chunksOf(read: StreamRead): ChunkShape[] {
  return read.events.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data) as ChunkShape);
}

export function streamedText(chunks: readonly ChunkShape[]): string {
  return chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
}

export async function getStats(url: string) {
  const response = await fetch(`${url}/stats`);
  return (await response.json()) as SimulatorStats;
}

/** Polls until `check` passes, so tests wait for what they need instead of sleeping blindly. */
export async function eventually(check: () => Promise<void> | void, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One Anthropic server-sent event: its `event:` name and its parsed `data:` JSON. */
export interface AnthropicEvent {
  event: string;
  data: { type: string; [field: string]: unknown };
  at: number;
}

export interface AnthropicStreamRead {
  readonly events: AnthropicEvent[];
  /** Set when the body ended with an error (a cut connection) rather than cleanly. */
  readonly error: unknown;
}

/**
 * Reads an Anthropic event stream to its end, insisting on Anthropic's framing: every event
 * is exactly an `event:` line and a `data:` line whose JSON `type` repeats the event name.
 */
export async function readAnthropicEvents(response: Response): Promise<AnthropicStreamRead> {
  const events: AnthropicEvent[] = [];
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    let chunk: Awaited<ReturnType<typeof reader.read>>;
    try {
      chunk = await reader.read();
    } catch (error) {
      return { events, error };
    }
    if (chunk.done) break;
    buffered += decoder.decode(chunk.value, { stream: true });
    let end: number;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      events.push(parseAnthropicEvent(buffered.slice(0, end)));
      buffered = buffered.slice(end + 2);
    }
  }
  if (buffered !== '') throw new Error(`stream ended mid-event: ${buffered}`);
  return { events, error: undefined };
}

function parseAnthropicEvent(block: string): AnthropicEvent {
  const match = /^event: ([a-z_]+)\ndata: (.*)$/.exec(block);
  if (!match) throw new Error(`not an Anthropic SSE event: ${JSON.stringify(block)}`);
  const data = JSON.parse(match[2]!) as AnthropicEvent['data'];
  if (data.type !== match[1]) throw new Error(`event ${match[1]} carries type ${data.type}`);
  return { event: match[1]!, data, at: Date.now() };
}

/** The text of a stream's `text_delta`s, in order. */
export function anthropicText(read: AnthropicStreamRead): string {
  return textDeltas(read).join('');
}

export function textDeltas(read: AnthropicStreamRead): string[] {
  return read.events
    .filter((e) => e.event === 'content_block_delta')
    .map((e) => (e.data.delta as { type: string; text: string }).text);
}

export interface AnthropicMessage {
  id: string;
  type: string;
  role: string;
  model: string;
  content: { type: string; text: string }[];
  stop_reason: string;
  stop_sequence: string | null;
  usage: { input_tokens: number; output_tokens: number };
}

export const ANTHROPIC_HEADERS = { 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-test' };

export async function createMessage(url: string, body: object, headers: Record<string, string> = {}) {
  const response = await post(
    `${url}/v1/messages`,
    { model: 'sim-small', ...body },
    { ...ANTHROPIC_HEADERS, ...headers },
  );
  if (response.status !== 200)
    throw new Error(`expected 200, got ${response.status}: ${await response.text()}`);
  return (await response.json()) as AnthropicMessage;
}
