/**
 * LangChain (`@langchain/openai`), configured only with llmq's `/v1` as its base URL, runs its
 * calls as llmq jobs: chat completions (invoke and stream), the Responses API and embeddings.
 * Real API, worker, simulator, Redis and Postgres.
 */
import { HumanMessage, SystemMessage, type AIMessageChunk } from '@langchain/core/messages';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { useStack, type PolledJob } from '@llmq/testing';
import OpenAI from 'openai';

jest.setTimeout(120_000);

const { stack, keys } = useStack({ workers: 1 });

const configuration = () => ({ baseURL: `${stack.apiUrl}/v1` });
const chat = (fields: Partial<ConstructorParameters<typeof ChatOpenAI>[0] & object> = {}) =>
  new ChatOpenAI({
    model: 'sim-small',
    apiKey: keys.acme!,
    configuration: configuration(),
    maxRetries: 0,
    ...fields,
  });
const poll = async (jobId: string) =>
  (await (await stack.request(`/api/jobs/${jobId}`, keys.acme!)).json()) as PolledJob;
const upstream = () => new OpenAI({ apiKey: 'unused', baseURL: `${stack.simulatorUrl}/v1`, maxRetries: 0 });

const messages = [new SystemMessage('You are terse.'), new HumanMessage('What is a queue?')];
const asOpenAi = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'What is a queue?' },
];

it('invokes ChatOpenAI: the answer is the job’s, with usage', async () => {
  const expected = await upstream().chat.completions.create({
    model: 'sim-small',
    messages: asOpenAi,
    max_tokens: 15,
  });
  const answer = await chat({ maxTokens: 15 }).invoke(messages);
  expect(answer.content).toBe(expected.choices[0]!.message.content);
  expect(answer.id).toMatch(/^chatcmpl-[0-9a-f-]{36}$/);
  expect(answer.usage_metadata).toMatchObject({
    output_tokens: 15,
    input_tokens: expected.usage!.prompt_tokens,
  });
  const job = await poll(answer.id!.replace('chatcmpl-', ''));
  expect(job).toMatchObject({ status: 'completed', result: answer.content });
});

it('streams ChatOpenAI chunk by chunk, ending with the usage', async () => {
  const expected = await upstream().chat.completions.create({
    model: 'sim-small',
    messages: asOpenAi,
    max_tokens: 25,
  });
  const chunks: AIMessageChunk[] = [];
  for await (const chunk of await chat({ maxTokens: 25 }).stream(messages)) chunks.push(chunk);
  expect(chunks.length).toBeGreaterThan(5);
  const whole = chunks.reduce((a, b) => a.concat(b));
  expect(whole.content).toBe(expected.choices[0]!.message.content);
  expect(whole.usage_metadata).toMatchObject({
    output_tokens: 25,
    input_tokens: expected.usage!.prompt_tokens,
  });
  const job = await poll(whole.id!.replace('chatcmpl-', ''));
  expect(job).toMatchObject({ status: 'completed', result: whole.content });
});

it('runs ChatOpenAI on the Responses API too', async () => {
  const answer = await chat({ useResponsesApi: true, maxTokens: 10 }).invoke(messages);
  expect(answer.response_metadata).toMatchObject({ status: 'incomplete' });
  const id = String(answer.response_metadata.id);
  expect(id).toMatch(/^resp_/);
  const job = await poll(id.replace('resp_', ''));
  expect(job).toMatchObject({ status: 'completed', finishReason: 'length' });
  expect(answer.text).toBe(job.result);
});

it('embeds with OpenAIEmbeddings', async () => {
  const embeddings = new OpenAIEmbeddings({
    model: 'sim-embed',
    apiKey: keys.acme!,
    configuration: configuration(),
  });
  const [planets, bread] = await embeddings.embedDocuments(['the red planet', 'bread in a hot oven']);
  const query = await embeddings.embedQuery('a red planet');
  for (const v of [planets!, bread!, query]) expect(v).toHaveLength(384);
  const cosine = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
  // The simulator's vectors are unit length and share directions for shared words.
  expect(cosine(query, planets!)).toBeGreaterThan(cosine(query, bread!));
});
