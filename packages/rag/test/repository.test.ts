/**
 * The RAG repository against PGlite + pgvector over the wire protocol: tenant isolation holds in
 * the repository itself, whatever ids, names or filters a caller passes.
 */
import { createPool, migrate, type Pool } from '@llmq/db';
import { freePort, startPgliteServer } from '@llmq/embedded';
import { RagRepository, type Collection } from '../src';

let server: Awaited<ReturnType<typeof startPgliteServer>>;
let pool: Pool;
let rag: RagRepository;
let acme: Collection;
let planets: string;

/** A unit vector along one axis of 384. */
const axis = (i: number, wobble = 0) =>
  Array.from({ length: 384 }, (_, j) => (j === i ? 1 : j === i + 1 ? wobble : 0));

beforeAll(async () => {
  server = await startPgliteServer({ dataDir: 'memory', port: await freePort() });
  pool = createPool({ connectionString: server.url, max: 4 });
  await migrate(pool);
  rag = new RagRepository(pool);
  acme = await rag.ensureCollection('acme', 'docs', 'sim-embed', 384);
  const { ingestion, documentIds } = await rag.createIngestion(
    acme,
    [
      { title: 'planets', contentType: 'text/plain', content: 'planets', metadata: { lang: 'en' } },
      { title: 'bread', contentType: 'text/plain', content: 'bread', metadata: { lang: 'fr' } },
    ],
    { maxTokens: 64, overlapTokens: 0 },
  );
  planets = documentIds[0]!;
  const docs = await rag.startIngestion('acme', ingestion.id);
  for (const doc of docs) {
    const i = doc.title === 'planets' ? 0 : 1;
    await rag.storeChunks('acme', ingestion.id, acme.id, doc, [
      { seq: 0, content: `${doc.title} chunk`, tokens: 2, embedding: axis(i * 10) },
      { seq: 1, content: `${doc.title} more`, tokens: 2, embedding: axis(i * 10, 0.5) },
    ]);
  }
  expect(await rag.finishIngestion('acme', ingestion.id)).toMatch(/\//);
}, 60_000);

afterAll(async () => {
  await pool.end();
  await server.stop();
});

describe('RagRepository', () => {
  it('finds the nearest chunks of the collection, with scores and titles', async () => {
    const hits = await rag.search('acme', acme.id, axis(0), { k: 3 });
    expect(hits.map((h) => [h.title, h.seq])).toEqual([
      ['planets', 0],
      ['planets', 1],
      ['bread', 0],
    ]);
    expect(hits[0]!.score).toBeCloseTo(1, 5);
    expect(
      (await rag.search('acme', acme.id, axis(0), { k: 3, filter: { lang: 'fr' } })).map((h) => h.title),
    ).toEqual(['bread', 'bread']);
    expect(await rag.search('acme', acme.id, axis(0), { k: 3, minScore: 0.95 })).toHaveLength(1);
  });

  it("never returns or changes another tenant's data, whatever ids it is given", async () => {
    expect(await rag.search('rival', acme.id, axis(0), { k: 10 })).toEqual([]);
    expect(await rag.getCollection('rival', 'docs')).toBeNull();
    expect(await rag.deleteDocument('rival', acme.id, planets)).toBeNull();
    expect(await rag.deleteCollection('rival', 'docs')).toBeNull();
    expect(await rag.search('acme', acme.id, axis(0), { k: 10 })).toHaveLength(4);
  });

  it('stores a document once however often its chunks are written (a re-run)', async () => {
    const { ingestion } = await rag.createIngestion(
      acme,
      [{ title: 'twice', contentType: 'text/plain', content: 'x', metadata: {} }],
      { maxTokens: 64, overlapTokens: 0 },
    );
    const [doc] = await rag.startIngestion('acme', ingestion.id);
    const chunk = { seq: 0, content: 'twice', tokens: 1, embedding: axis(100) };
    await rag.storeChunks('acme', ingestion.id, acme.id, doc!, [chunk]);
    await rag.storeChunks('acme', ingestion.id, acme.id, doc!, [chunk]);
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM chunks WHERE document_id = $1`, [
      doc!.id,
    ]);
    expect(rows[0].n).toBe(1);
    expect(await rag.getIngestion('acme', ingestion.id)).toMatchObject({ documentsDone: 1, chunksDone: 1 });
  });
});
