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
