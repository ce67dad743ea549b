/**
 * Conversations kept server-side: turns run strictly in order across a fleet of two workers,
 * each with the history in front of its messages, trimmed to the model's context window.
 */
import { countPromptTokens } from '@llmq/llm';
import { defaultProviders, useStack, type PolledJob } from '@llmq/testing';
import OpenAI from 'openai';
import WebSocket from 'ws';

const { stack, keys } = useStack(
  {
    workers: 2,
    // Slow answers: without ordering, a second turn would start long before the first ends.
    simulatorEnv: { SIM_TTFT_MS: '300', SIM_TOKEN_MS: '5', SIM_MODELS: 'sim-small,sim-large,sim-tiny' },
    providers: (urls) => {
      const doc = defaultProviders(urls) as { backends: Array<{ models: string[] }> };
      for (const b of doc.backends) b.models.push('sim-tiny');
      return { ...doc, models: [{ name: 'sim-tiny', contextWindow: 400 }] };
    },
  },
  ['acme', 'globex'],
);

interface TurnView {
  seq: number;
  jobId: string;
  status: string;
  messages: Array<{ role: string; content: string }>;
  reply: string | null;
}
interface ConversationView {
  conversationId: string;
  turns: TurnView[];
  hasMore: boolean;
}

/** The simulator's prompt token count: characters / 4, rounded up, plus 4 per message. */
const simulatorTokens = (messages: Array<{ content: string }>) =>
  Math.ceil(messages.reduce((n, m) => n + m.content.length, 0) / 4) + 4 * messages.length;

const conversation = async (id: string, key = keys.acme!, query = '') => {
  const res = await stack.request(`/api/conversations/${id}${query}`, key);
  return { res, body: (await res.json().catch(() => null)) as ConversationView };
};

const turn = (conversationId: string, content: string, extra: object = {}) =>
  stack.submit(keys.acme!, {
    model: 'sim-small',
    messages: [{ role: 'user', content }],
    max_tokens: 20,
    conversationId,
    ...extra,
  });

describe('conversations', () => {
  it('runs two turns submitted at once in order, the second with the first answer in its prompt', async () => {
    const id = `chat-${Date.now()}`;
    const [a, b] = await Promise.all([
      turn(id, 'What is a message queue?'),
      turn(id, 'And why would I put one in front of an LLM?'),
    ]);
    expect(a.res.status).toBe(202);
    expect(b.res.status).toBe(202);
    await Promise.all([
      stack.waitForJob(keys.acme!, a.body.jobId),
      stack.waitForJob(keys.acme!, b.body.jobId),
    ]);

    const { res, body } = await conversation(id);
    expect(res.status).toBe(200);
    expect(body.turns.map((t) => t.seq)).toEqual([1, 2]);
    const [first, second] = body.turns as [TurnView, TurnView];
    expect([first.jobId, second.jobId].sort()).toEqual([a.body.jobId, b.body.jobId].sort());
    expect(first.status).toBe('completed');
    expect(second.status).toBe('completed');
    expect(first.reply).toEqual(expect.any(String));

    const jobs = await Promise.all(
      [first, second].map(
        async (t) =>
          (await (await stack.request(`/api/jobs/${t.jobId}`, keys.acme!)).json()) as PolledJob & {
            startedAt: string;
            completedAt: string;
          },
      ),
    );
    const [j1, j2] = jobs as [(typeof jobs)[0], (typeof jobs)[0]];
    // Strictly in order: the second turn started only after the first had finished.
    expect(Date.parse(j2.startedAt)).toBeGreaterThanOrEqual(Date.parse(j1.completedAt));
    // Its prompt was the first exchange, then its own message (the simulator counts prompt
    // tokens as characters / 4 plus 4 per message).
    expect(j2.usage!.prompt_tokens).toBe(
      simulatorTokens([...first.messages, { role: 'assistant', content: first.reply! }, ...second.messages]),
    );
  });

  it('trims the oldest turns to fit the model window, keeping the conversation instructions', async () => {
    const id = `long-${Date.now()}`;
    const system = { role: 'system', content: 'You are terse.' };
    const filler = 'queue '.repeat(60);
    let last: PolledJob | null = null;
    for (let i = 0; i < 5; i++) {
      const { res, body } = await stack.submit(keys.acme!, {
        model: 'sim-tiny',
        messages: [...(i === 0 ? [system] : []), { role: 'user', content: `${i}: ${filler}` }],
        max_tokens: 16,
        conversationId: id,
      });
      expect(res.status).toBe(202);
      last = await stack.waitForJob(keys.acme!, body.jobId);
      expect(last.status).toBe('completed');
    }
    const { body } = await conversation(id);
    expect(body.turns).toHaveLength(5);
    // Which prompt was sent: the system message, the newest exchanges that fit, the last turn.
    const exchanges = body.turns
      .slice(0, 4)
      .map((t) => [
        ...t.messages.filter((m) => m.role !== 'system'),
        { role: 'assistant', content: t.reply! },
      ]);
    const current = body.turns[4]!.messages;
    const candidates = [0, 1, 2, 3, 4].map((dropped) => [
      system,
      ...exchanges.slice(dropped).flat(),
      ...current,
    ]);
    const sent = candidates.findIndex((m) => simulatorTokens(m) === last!.usage!.prompt_tokens);
    // Older turns were dropped, and what remained fits the window (400) less max_tokens and margin.
    expect(sent).toBeGreaterThan(0);
    expect(countPromptTokens(candidates[sent]! as never)).toBeLessThanOrEqual(400 - 16 - 64);
    // One turn fewer dropped would not have fitted.
    expect(countPromptTokens(candidates[sent - 1]! as never)).toBeGreaterThan(400 - 16 - 64);
  });

  it('fails a turn that cannot fit the window even alone, without running it', async () => {
    const { body } = await stack.submit(keys.acme!, {
      model: 'sim-tiny',
      messages: [{ role: 'user', content: 'word '.repeat(400) }],
      max_tokens: 16,
      conversationId: `huge-${Date.now()}`,
    });
    const job = await stack.waitForJob(keys.acme!, body.jobId);
    expect(job.status).toBe('failed');
    expect(job.error).toMatchObject({ code: 'context_length_exceeded', retryable: false });
  });

  it('never answers a turn from the cache: the same message twice runs twice', async () => {
    const id = `nocache-${Date.now()}`;
    const body = { messages: [{ role: 'user', content: 'Say hi' }], max_tokens: 5, seed: 1, temperature: 0 };
    const one = await turn(id, 'Say hi', body);
    await stack.waitForJob(keys.acme!, one.body.jobId);
    const two = await turn(id, 'Say hi', body);
    expect(two.res.status).toBe(202);
    expect(two.body.jobId).not.toBe(one.body.jobId);
  });

  it('pages turns, hides conversations from other tenants, forgets on DELETE', async () => {
    const id = `paged-${Date.now()}`;
    for (let i = 0; i < 3; i++) {
      const { body } = await turn(id, `turn ${i}`);
      await stack.waitForJob(keys.acme!, body.jobId);
    }
    const page = await conversation(id, keys.acme!, '?limit=2');
    expect(page.body.turns.map((t) => t.seq)).toEqual([1, 2]);
    expect(page.body.hasMore).toBe(true);
    const rest = await conversation(id, keys.acme!, '?after=2');
    expect(rest.body.turns.map((t) => t.seq)).toEqual([3]);
    expect(rest.body.hasMore).toBe(false);

    expect((await conversation(id, keys.globex!)).res.status).toBe(404);
    expect((await conversation(id, keys.acme!, '?limit=0')).res.status).toBe(400);
    expect((await conversation('bad id!', keys.acme!)).res.status).toBe(404);

    // The other tenant's same id is a different conversation: it starts at turn 1.
    const theirs = await stack.submit(keys.globex!, { prompt: 'hello', max_tokens: 5, conversationId: id });
    await stack.waitForJob(keys.globex!, theirs.body.jobId);
    expect((await conversation(id, keys.globex!)).body.turns.map((t) => t.seq)).toEqual([1]);

    const del = await stack.request(`/api/conversations/${id}`, keys.acme!, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect((await conversation(id)).res.status).toBe(404);
    expect((await conversation(id, keys.globex!)).res.status).toBe(200);
  });

  it('continues one conversation across transports: OpenAI SDK, WebSocket, REST', async () => {
    const id = `mixed-${Date.now()}`;
    const openai = new OpenAI({ apiKey: keys.acme!, baseURL: `${stack.apiUrl}/v1`, maxRetries: 0 });
    const first = await openai.chat.completions.create({
      model: 'sim-small',
      messages: [{ role: 'user', content: 'First, over the OpenAI facade.' }],
      max_tokens: 10,
      // @ts-expect-error llmq's extension of the request
      conversation_id: id,
    });
    expect(first.choices[0]!.message.content).toEqual(expect.any(String));

    const ws = new WebSocket(`${stack.apiUrl.replace('http', 'ws')}/ws`, {
      headers: { authorization: `Bearer ${keys.acme!}` },
    });
    const complete = await new Promise<{ type: string; taskId: string }>((resolve, reject) => {
      ws.on('error', reject);
      ws.on('open', () =>
        ws.send(
          JSON.stringify({
            type: 'PROMPT',
            id: 'w1',
            content: 'Second, over WebSocket.',
            model: 'sim-small',
            max_tokens: 10,
            conversationId: id,
          }),
        ),
      );
      ws.on('message', (data) => {
        const m = JSON.parse(String(data)) as { type: string; taskId: string };
        if (m.type === 'COMPLETE' || m.type === 'ERROR') resolve(m);
      });
    });
    ws.close();
    expect(complete.type).toBe('COMPLETE');

    const third = await turn(id, 'Third, over REST.');
    const job = await stack.waitForJob(keys.acme!, third.body.jobId);
    const { body } = await conversation(id);
    expect(body.turns.map((t) => t.seq)).toEqual([1, 2, 3]);
    expect(body.turns[1]!.jobId).toBe(complete.taskId);
    // The third prompt held both earlier exchanges, whatever transport brought them.
    const [t1, t2, t3] = body.turns as [TurnView, TurnView, TurnView];
    const exchange = (t: TurnView) => [...t.messages, { role: 'assistant', content: t.reply! }];
    expect(job.usage!.prompt_tokens).toBe(
      simulatorTokens([...exchange(t1), ...exchange(t2), ...t3.messages]),
    );
  });

  it('refuses an invalid conversation id by name and records nothing', async () => {
    const before = await stack.pool.query('SELECT count(*)::int AS n FROM jobs');
    const { res, body } = await stack.submit(keys.acme!, {
      prompt: 'hi',
      conversationId: 'no spaces allowed',
    });
    expect(res.status).toBe(400);
    expect(body).toMatchObject({ code: 'invalid_request', field: 'conversationId' });
    const after = await stack.pool.query('SELECT count(*)::int AS n FROM jobs');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});
