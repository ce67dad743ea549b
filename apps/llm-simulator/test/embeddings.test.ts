import { getStats, post, useSimulator } from './helpers';

interface EmbeddingList {
  object: string;
  model: string;
  data: { object: string; index: number; embedding: number[] | string }[];
  usage: { prompt_tokens: number; total_tokens: number };
}

function decodeBase64(text: string): number[] {
  const bytes = Buffer.from(text, 'base64');
  return Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
}

function cosine(a: readonly number[], b: readonly number[]): number {
  return a.reduce((sum, value, i) => sum + value * b[i]!, 0);
}

describe('embeddings', () => {
  const running = useSimulator();

  async function embed(input: unknown, extra: object = {}): Promise<EmbeddingList> {
    const response = await post(`${running().url}/v1/embeddings`, { model: 'sim-embed', input, ...extra });
    expect(response.status).toBe(200);
    return (await response.json()) as EmbeddingList;
  }

  async function vectors(texts: string[]): Promise<number[][]> {
    return (await embed(texts)).data.map((d) => d.embedding as number[]);
  }

  it('returns unit-length vectors of the configured dimension in OpenAI list shape', async () => {
    const body = await embed(['first text', 'second text']);
    expect(body).toMatchObject({ object: 'list', model: 'sim-embed' });
    expect(body.data.map((d) => [d.object, d.index])).toEqual([
      ['embedding', 0],
      ['embedding', 1],
    ]);
    for (const { embedding } of body.data) {
      const vector = embedding as number[];
      expect(vector).toHaveLength(384);
      expect(Math.sqrt(cosine(vector, vector))).toBeCloseTo(1, 5);
    }
    expect(body.usage).toEqual({ prompt_tokens: 6, total_tokens: 6 });
  });

  it('encodes base64 as little-endian float32, decoding to the float vector exactly', async () => {
    const float = await embed('the same text either way');
    const base64 = await embed('the same text either way', { encoding_format: 'base64' });
    const encoded = base64.data[0]?.embedding;
    expect(typeof encoded).toBe('string');
    expect(decodeBase64(encoded as string)).toEqual(float.data[0]?.embedding);
  });

  it('is deterministic', async () => {
    const [a] = await vectors(['a stable sentence']);
    const [b] = await vectors(['a stable sentence']);
    expect(b).toEqual(a);
  });

  it('places texts that share words closer than unrelated texts', async () => {
    const [question, paraphrase, unrelated] = await vectors([
      'What is the capital city of France?',
      'capital city of France',
      'Quantum chromodynamics describes gluons binding quarks',
    ]);
    const related = cosine(question!, paraphrase!);
    const distant = cosine(question!, unrelated!);
    expect(related).toBeGreaterThan(0.7);
    expect(Math.abs(distant)).toBeLessThan(0.3);
    expect(related - distant).toBeGreaterThan(0.5);
  });

  it('shortens vectors to the requested dimensions, still unit length', async () => {
    const body = await embed('short please', { dimensions: 64 });
    const vector = body.data[0]?.embedding as number[];
    expect(vector).toHaveLength(64);
    expect(Math.sqrt(cosine(vector, vector))).toBeCloseTo(1, 5);
  });

  it('treats token-id arrays as the text of their numbers', async () => {
    const tokens = await embed([
      [101, 2023],
      [7, 8, 9],
    ]);
    const single = await embed([101, 2023]);
    const [text] = await vectors(['101 2023']);
    expect(tokens.data).toHaveLength(2);
    expect(tokens.data[0]?.embedding).toEqual(text);
    expect(single.data[0]?.embedding).toEqual(text);
    expect(tokens.usage.prompt_tokens).toBe(5);
  });

  it('rejects empty input, too many dimensions and a missing model', async () => {
    const url = `${running().url}/v1/embeddings`;
    const empty = await post(url, { model: 'm', input: '' });
    const noItems = await post(url, { model: 'm', input: [] });
    const tooWide = await post(url, { model: 'm', input: 'x', dimensions: 4096 });
    const noModel = await post(url, { input: 'x' });
    expect([empty.status, noItems.status, tooWide.status, noModel.status]).toEqual([400, 400, 400, 400]);
    expect(((await empty.json()) as { error: { param: string } }).error.param).toBe('input');
    expect(((await tooWide.json()) as { error: { param: string } }).error.param).toBe('dimensions');
    expect(((await noModel.json()) as { error: { code: string } }).error.code).toBe(
      'missing_required_parameter',
    );
  });

  it('counts embeddings requests in stats', async () => {
    await embed('one');
    await embed(['two', 'three']);
    const stats = await getStats(running().url);
    expect(stats.requests.embeddings).toBe(2);
    expect(stats.completed).toBe(2);
  });
});
