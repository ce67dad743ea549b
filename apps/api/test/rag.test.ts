/**
 * RAG end to end on PGlite + pgvector: ingestion jobs (chunking, embeddings from the simulator's
 * bag-of-words embedder, so texts sharing words are near), tenant-isolated HNSW search, and
 * generation with retrieved context. Real API, worker, simulator, Redis and Postgres processes.
 */
import { eventually, useStack, type TestStack } from '@llmq/testing';

jest.setTimeout(120_000);

// Context is capped at 300 tokens: with 100-token chunks, at most two fit.
const { stack, keys } = useStack({ workers: 1, workerEnv: { RAG_MAX_CONTEXT_TOKENS: '300' } }, [
  'acme',
  'rival',
]);

const PLANETS =
  'Planets orbit the sun. Mars is a red planet with two small moons. Jupiter is the largest planet, a gas giant with a great red spot. Saturn has bright rings of ice.';
const COOKING =
  'To bake bread, mix flour, water, salt and yeast. Knead the dough, let it rise for an hour, then bake it in a hot oven until the crust is brown.';
const ANIMALS =
  'Cats and dogs are common pets. Dogs bark and fetch; cats purr and climb. Both need food, water and care.';

interface IngestionView {
  ingestionId: string;
  status: string;
  documentsTotal: number;
  documentsDone: number;
  chunks: number;
  consistencyToken: string | null;
  documents?: { documentId: string; title: string | null }[];
}

async function ingestJson(key: string, collection: string, body: object): Promise<IngestionView> {
  const res = await stack.request(`/api/collections/${collection}/documents`, key, {
    method: 'POST',
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(202);
  return (await res.json()) as IngestionView;
}

function waitIngestion(key: string, id: string): Promise<IngestionView> {
  return eventually(async () => {
    const view = (await (await stack.request(`/api/ingestions/${id}`, key)).json()) as IngestionView;
    return view.status === 'completed' || view.status === 'failed' ? view : undefined;
  }, `ingestion ${id} finished`);
}

async function search(key: string, collection: string, query: Record<string, string>) {
  const res = await stack.request(`/api/collections/${collection}/search?${new URLSearchParams(query)}`, key);
  return {
    status: res.status,
    body: (await res.json()) as {
      data: { documentId: string; title: string; score: number; content: string }[];
      code?: string;
    },
  };
}

describe('collections', () => {
  let ingestion: IngestionView;
  let planetsId: string;

  beforeAll(async () => {
    const accepted = await ingestJson(keys.acme!, 'docs', {
      documents: [
        { title: 'planets', text: PLANETS, metadata: { lang: 'en', topic: 'space' } },
        { title: 'cooking', text: COOKING, metadata: { lang: 'en', topic: 'food' } },
        { title: 'animaux', text: ANIMALS, metadata: { lang: 'fr', topic: 'pets' } },
      ],
    });
    expect(accepted).toMatchObject({ status: 'queued', documentsTotal: 3 });
    planetsId = accepted.documents![0]!.documentId;
    ingestion = await waitIngestion(keys.acme!, accepted.ingestionId);
  });

  it('ingests as a queued job with visible progress, ending with a consistency token', () => {
    expect(ingestion).toMatchObject({ status: 'completed', documentsTotal: 3, documentsDone: 3 });
    expect(ingestion.chunks).toBeGreaterThanOrEqual(3);
    expect(ingestion.consistencyToken).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/i);
  });

  it('finds the nearest chunks, best first, and filters on metadata', async () => {
    const { status, body } = await search(keys.acme!, 'docs', {
      q: 'which planet has rings and moons',
      k: '3',
      consistencyToken: ingestion.consistencyToken!,
    });
    expect(status).toBe(200);
    expect(body.data[0]).toMatchObject({ documentId: planetsId, title: 'planets' });
    const scores = body.data.map((h) => h.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    const fr = await search(keys.acme!, 'docs', {
      q: 'planets and pets',
      filter: JSON.stringify({ lang: 'fr' }),
    });
    expect(fr.body.data.map((h) => h.title)).toEqual(['animaux']);
  });

  it('accepts text and markdown files as multipart uploads, chunked as asked', async () => {
    const form = new FormData();
    const long = Array.from(
      { length: 40 },
      (_, i) => `Section ${i}: the telescope observed planet number ${i}.`,
    ).join('\n\n');
    form.append(
      'file',
      new Blob([`# Observations\n\n${long}`], { type: 'text/markdown' }),
      'observations.md',
    );
    form.append('file', new Blob(['A short note about comets.'], { type: 'text/plain' }), 'note.txt');
    form.append('metadata', JSON.stringify({ source: 'upload' }));
    form.append('chunking', JSON.stringify({ maxTokens: 64, overlapTokens: 8 }));
    const res = await stack.request('/api/collections/uploads/documents', keys.acme!, {
      method: 'POST',
      body: form,
    });
    expect(res.status).toBe(202);
    const done = await waitIngestion(keys.acme!, ((await res.json()) as IngestionView).ingestionId);
    expect(done).toMatchObject({ status: 'completed', documentsDone: 2 });
    expect(done.chunks).toBeGreaterThan(5);
    const hit = await search(keys.acme!, 'uploads', {
      q: 'comets',
      filter: JSON.stringify({ source: 'upload' }),
      consistencyToken: done.consistencyToken!,
    });
    expect(hit.body.data[0]!.title).toBe('note.txt');
  });

  it('refuses bad uploads with a precise problem and writes nothing', async () => {
    const before = await stack.pool.query('SELECT count(*)::int AS n FROM documents');
    const bad = async (
      init: RequestInit,
      status: number,
      code: string,
      path = '/api/collections/docs/documents',
    ) => {
      const res = await stack.request(path, keys.acme!, { method: 'POST', ...init });
      expect(res.status).toBe(status);
      expect(await res.json()).toMatchObject({ code });
    };
    await bad({ body: JSON.stringify({ documents: [] }) }, 400, 'invalid_request');
    await bad({ body: JSON.stringify({ documents: [{ text: 'x', extra: 1 }] }) }, 400, 'invalid_request');
    await bad(
      { body: JSON.stringify({ documents: [{ text: 'x' }] }) },
      400,
      'invalid_request',
      '/api/collections/bad%20name/documents',
    );
    await bad(
      {
        body: JSON.stringify({ documents: [{ text: 'x' }], chunking: { maxTokens: 64, overlapTokens: 40 } }),
      },
      400,
      'invalid_request',
    );
    const png = new FormData();
    png.append('file', new Blob([new Uint8Array([137, 80, 78, 71])], { type: 'image/png' }), 'x.png');
    await bad({ body: png }, 415, 'unsupported_media_type');
    const latin1 = new FormData();
    latin1.append(
      'file',
      new Blob([new Uint8Array([0x63, 0x61, 0x66, 0xe9])], { type: 'text/plain' }),
      'x.txt',
    );
    await bad({ body: latin1 }, 422, 'invalid_encoding');
    await bad({ body: 'plain', headers: { 'content-type': 'text/csv' } }, 415, 'unsupported_media_type');
    expect((await stack.pool.query('SELECT count(*)::int AS n FROM documents')).rows[0].n).toBe(
      before.rows[0].n,
    );
  });

  it("keeps tenants apart: another tenant's collection is invisible, even with crafted filters", async () => {
    expect((await search(keys.rival!, 'docs', { q: 'planets' })).status).toBe(404);
    const own = await ingestJson(keys.rival!, 'docs', {
      documents: [{ title: 'rival', text: 'Planets, rings and moons of our own.' }],
    });
    await waitIngestion(keys.rival!, own.ingestionId);
    for (const filter of [undefined, { tenant_id: 'acme' }, { lang: 'en' }, { "') OR true --": 'x' }]) {
      const { status, body } = await search(keys.rival!, 'docs', {
        q: 'which planet has rings and moons',
        k: '10',
        ...(filter ? { filter: JSON.stringify(filter) } : {}),
      });
      expect(status).toBe(200);
      expect(body.data.every((h) => h.title === 'rival')).toBe(true);
    }
    const list = (await (await stack.request('/api/collections', keys.rival!)).json()) as {
      data: { name: string; documents: number }[];
    };
    expect(list.data).toEqual([expect.objectContaining({ name: 'docs', documents: 1 })]);
    // Ingestion and document ids of another tenant are 404s as well.
    expect((await stack.request(`/api/ingestions/${ingestion.ingestionId}`, keys.rival!)).status).toBe(404);
    expect(
      (await stack.request(`/api/collections/docs/documents/${planetsId}`, keys.rival!, { method: 'DELETE' }))
        .status,
    ).toBe(404);
  });
});

describe('generation with rag', () => {
  async function generate(body: object): Promise<{
    jobId: string;
    job: Awaited<ReturnType<TestStack['waitForJob']>> & {
      sources: { title: string; documentId: string }[] | null;
    };
  }> {
    const { res, body: accepted } = await stack.submit(keys.acme!, body);
    expect([200, 202]).toContain(res.status);
    const job = (await stack.waitForJob(keys.acme!, accepted.jobId)) as never;
    return { jobId: accepted.jobId, job };
  }

  it('answers with retrieved context, fitted to the token budget, and returns its sources', async () => {
    const plain = await generate({ prompt: 'Tell me about the planet with rings', max_tokens: 8 });
    const { job } = await generate({
      prompt: 'Tell me about the planet with rings',
      max_tokens: 8,
      rag: { collection: 'uploads', topK: 5 },
    });
    expect(job.status).toBe('completed');
    // Chunks of 64 tokens and a 300-token budget: fewer than the 5 asked for fit.
    expect(job.sources!.length).toBeGreaterThan(0);
    expect(job.sources!.length).toBeLessThan(5);
    expect(job.usage!.prompt_tokens).toBeGreaterThan(plain.job.usage!.prompt_tokens + 50);
    expect(job.usage!.prompt_tokens).toBeLessThan(plain.job.usage!.prompt_tokens + 300 + 40);
  });

  it('caches a RAG answer under its sources: a changed collection is not answered from the old entry', async () => {
    const ask = {
      prompt: 'What do you knead before baking bread?',
      max_tokens: 8,
      temperature: 0,
      rag: { collection: 'bakery', topK: 1 },
    };
    const first = await ingestJson(keys.acme!, 'bakery', { documents: [{ title: 'v1', text: COOKING }] });
    const done1 = await waitIngestion(keys.acme!, first.ingestionId);
    const a = await generate({ ...ask, rag: { ...ask.rag, consistencyToken: done1.consistencyToken } });
    const b = await generate({ ...ask, rag: { ...ask.rag, consistencyToken: done1.consistencyToken } });
    expect(b.job.sources).toEqual(a.job.sources);
    const cached = async (jobId: string) =>
      (
        await stack.pool.query(`SELECT cache_status FROM usage_ledger WHERE kind = 'job' AND job_id = $1`, [
          jobId,
        ])
      ).rows[0]?.cache_status;
    expect(await cached(a.jobId)).toBe('miss');
    expect(await cached(b.jobId)).toBe('exact');

    // New content: the same request now retrieves another chunk, so it must not reuse the entry.
    const del = await stack.request(
      `/api/collections/bakery/documents/${first.documents![0]!.documentId}`,
      keys.acme!,
      { method: 'DELETE' },
    );
    expect(del.status).toBe(200);
    const second = await ingestJson(keys.acme!, 'bakery', {
      documents: [{ title: 'v2', text: `${COOKING} Knead the dough twice for a soft crumb.` }],
    });
    const done2 = await waitIngestion(keys.acme!, second.ingestionId);
    const c = await generate({ ...ask, rag: { ...ask.rag, consistencyToken: done2.consistencyToken } });
    expect(c.job.sources![0]!.title).toBe('v2');
    expect(await cached(c.jobId)).toBe('miss');
  });

  it('refuses rag on a collection that does not exist', async () => {
    const { res, body } = await stack.submit(keys.acme!, { prompt: 'x', rag: { collection: 'nowhere' } });
    expect(res.status).toBe(422);
    expect(body).toMatchObject({ code: 'collection_not_found', field: 'rag.collection' });
  });

  it('deletes a collection', async () => {
    const { rows: ids } = await stack.pool.query(
      `SELECT id FROM collections WHERE tenant_id = 'acme' AND name = 'bakery'`,
    );
    const del = await stack.request('/api/collections/bakery', keys.acme!, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect((await search(keys.acme!, 'bakery', { q: 'bread' })).status).toBe(404);
    const { rows } = await stack.pool.query(
      `SELECT count(*)::int AS n FROM chunks WHERE collection_id = $1`,
      [ids[0].id],
    );
    expect(rows[0].n).toBe(0);
  });
});
