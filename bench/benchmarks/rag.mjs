import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { runPool } from '../lib/pool.mjs';
import { mulberry32 } from '../lib/random.mjs';
import { ratio, summarize } from '../lib/stats.mjs';

const require = createRequire(import.meta.url);
/** @type {typeof import('@llmq/embedded')} */
const embedded = require('@llmq/embedded');
/** @type {typeof import('@llmq/db')} */
const db = require('@llmq/db');
/** @type {typeof import('@llmq/rag')} */
const rag = require('@llmq/rag');

/** What `RagRepository.search` orders by: the HNSW index answers it (cosine distance). */
const INDEXED_ORDER = /ORDER BY c\.embedding <=> \$3::vector\b/;
/** The same order on an expression no index matches, so the planner has to compute every distance. */
const EXACT_ORDER = 'ORDER BY (c.embedding <=> $3::vector) + 0';

const WORDS = (
  'queue job worker token stream model cache tenant budget limit replica vector index chunk ' +
  'document search answer prompt context retry backoff lease heartbeat shard partition'
).split(' ');

/**
 * @typedef {{ chunks: number, chunksPerDocument: number, dimensions: number, clusters: number,
 *             noise: number, contentChars: number, insertBatch: number, maintenanceWorkMem: string,
 *             queries: number, hnswRounds: number, warmupQueries: number, callers: number, k: number,
 *             seed: number }} RagSettings
 */

/**
 * pgvector search as llmq runs it: `RagRepository.search` (`@llmq/rag`) over a `ReplicaPool`
 * (`@llmq/db`) for the top k chunks of one tenant's collection, on `settings.chunks` chunks of
 * 384 dimensions, with `callers` searches in flight. The reference is the same repository, the
 * same replica pool and the same SQL with only the ORDER BY changed to an expression no index
 * matches, so every query computes every distance (exact search): the ratio is what the HNSW
 * index buys. The reference's answers are the exact top k, so they also give the index's
 * recall@k.
 *
 * The data are clustered (random unit centres plus Gaussian noise, normalised), drawn from a
 * seeded generator, and loaded the way a bulk load would be: the HNSW index is dropped, the
 * chunks inserted in large batches (vectors in pgvector's binary format), then the index built
 * with `maintenanceWorkMem` and the table analyzed. The load, build and analyze times are
 * reported as facts, not ratios.
 *
 * One PGlite server (with pgvector) is the primary and the replica: the native PostgreSQL here
 * has no pgvector, so the replica URL points at the same server. Reads still go through the
 * replica pool's connections (a read that fell back to the primary is a problem), but there is
 * no second machine, and PGlite runs every query on one thread whatever the number of callers.
 *
 * @param {RagSettings} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function ragBenchmark(settings, { resources, log, runId }) {
  log('rag: starting a PGlite server (pgvector) and migrating it');
  const { server, release } = await startPglite(resources);
  // Long statements: building the index on 100k chunks takes minutes on PGlite.
  const primary = db.createPool({
    connectionString: server.url,
    max: 2,
    statementTimeoutMs: 1_800_000,
    applicationName: 'llmq-bench-rag',
  });
  // The replica pool's primary, counted: a read that lands here did not go through the replica.
  const fallback = db.createPool({
    connectionString: server.url,
    max: 2,
    applicationName: 'llmq-bench-rag-fallback',
  });
  let fallbackReads = 0;
  const fallbackQuery = fallback.query.bind(fallback);
  fallback.query = (...args) => {
    fallbackReads += 1;
    return fallbackQuery(...args);
  };
  /** @type {import('@llmq/db').ReplicaPool | undefined} */
  let replicas;
  try {
    await db.migrate(primary);
    const space = clusterSpace(settings);
    const tenantId = `bench-${runId}`;
    const loaded = await load(primary, space, tenantId, settings, (m) => log(`rag: ${m}`));

    replicas = new db.ReplicaPool({
      primary: fallback,
      replicaUrls: [server.url],
      poolMax: settings.callers,
      // PGlite runs one query at a time, so a health check, and a new connection's startup, wait
      // behind every search in flight: up to 8 exact searches of 100k chunks, several seconds. The
      // defaults (2 s and 5 s) removed the replica mid-run in trial runs; what is measured here is
      // the search, not the failover.
      healthTimeoutMs: 60_000,
      connectionTimeoutMs: 60_000,
      applicationName: 'llmq-bench-rag-read',
    });
    replicas.start();
    await replicas.checkHealth();
    if (!replicas.status()[0]?.healthy)
      throw new Error(`the replica did not pass its health check: ${replicas.status()[0]?.lastError}`);
    // One connection per caller, opened now rather than behind the first searches.
    await Promise.all(Array.from({ length: settings.callers }, () => replicas.query('SELECT 1')));

    const indexed = new rag.RagRepository(primary, replicas);
    const exact = new rag.RagRepository(primary, exactReader(replicas));
    const queries = space.draw(settings.queries, settings.seed + 2);
    const warmup = space.draw(settings.warmupQueries, settings.seed + 3);
    const search = (repo) => (embedding) =>
      repo.search(tenantId, loaded.collectionId, embedding, { k: settings.k });

    const probe = { tenantId, collectionId: loaded.collectionId, embedding: queries[0], k: settings.k };
    // Nothing analyzes tables by itself on PGlite (no autovacuum): the plan before ANALYZE is
    // what searches get until something does.
    const beforeAnalyze = (await explainBoth(primary, replicas, probe)).llmq;
    const t0 = performance.now();
    await primary.query('ANALYZE');
    const analyzeSeconds = (performance.now() - t0) / 1000;
    log(`rag: ANALYZE in ${analyzeSeconds.toFixed(1)} s`);
    const plans = { ...(await explainBoth(primary, replicas, probe)), llmqBeforeAnalyze: beforeAnalyze };
    const hnsw = await hnswSettings(replicas);
    const run = async (name, once, rounds) => {
      log(
        `rag: ${name}: ${settings.warmupQueries} warm-up queries, then ${settings.queries} queries ` +
          `${rounds} time(s) over at ${settings.callers} callers`,
      );
      const warm = await measure(once, warmup, settings.callers);
      return {
        ...(await measure(once, queries, settings.callers, rounds)),
        warmupErrors: warm.errors.length,
      };
    };
    const reference = await run('exact search (reference)', search(exact), 1);
    const llmq = await run('HNSW search', search(indexed), settings.hnswRounds);
    const recall = recallAtK(llmq.ids, reference.ids, settings.k);
    const replicaStatus = replicas.status()[0];

    return {
      settings,
      database: {
        server: 'PGlite (pgvector) over the wire protocol; the replica URL points at the same server',
        pgvector: loaded.pgvector,
        efSearch: hnsw.efSearch,
        iterativeScan: hnsw.iterativeScan,
        replicaHealthy: replicaStatus?.healthy ?? false,
        readsOnPrimary: fallbackReads,
      },
      load: { ...loaded.facts, analyzeSeconds },
      plans,
      reference: summary(reference, settings.k),
      llmq: summary(llmq, settings.k),
      recall,
      ratios: {
        throughput: ratio(llmq.perSecond, reference.perSecond),
        p50: ratio(llmq.latencyMs.p50, reference.latencyMs.p50),
        p99: ratio(llmq.latencyMs.p99, reference.latencyMs.p99),
        // The reference's recall is 1 by definition: it is the exact answer.
        recall: recall.mean,
      },
      problems: [
        ...searchProblems('HNSW search', llmq, settings.k),
        ...searchProblems('exact search', reference, settings.k),
        ...planProblems(plans),
        ...exactnessProblems(llmq, reference),
        ...(fallbackReads > 0
          ? [`${fallbackReads} reads went to the replica pool's primary instead of the replica`]
          : []),
        ...(replicaStatus?.healthy
          ? []
          : [`the replica was removed from reads: ${replicaStatus?.lastError}`]),
      ],
    };
  } catch (error) {
    const exit = await Promise.race([server.exited, new Promise((r) => setTimeout(r, 50, null))]);
    if (exit)
      throw new Error(`${error?.message ?? error}; the PGlite server exited: ${server.output().slice(-500)}`);
    throw error;
  } finally {
    await replicas?.close().catch(() => undefined);
    await Promise.all([primary.end(), fallback.end()]).catch(() => undefined);
    await release();
  }
}

/** An in-memory PGlite server with pgvector, registered so it is stopped on errors and signals. */
async function startPglite(resources) {
  /** @type {import('@llmq/embedded').PgliteServerHandle | undefined} */
  let server;
  const release = resources.add(
    'rag pglite',
    async () => {
      await server?.stop();
    },
    () => [server?.pid],
  );
  server = await embedded.startPgliteServer({ dataDir: 'memory', port: await embedded.freePort() });
  return { server, release };
}

/**
 * Reads for the reference: the repository's own SQL with its ORDER BY made unindexable. Throws if
 * the search SQL no longer has the expected ORDER BY, so a changed query cannot silently turn the
 * reference into another HNSW search.
 * @param {import('@llmq/rag').Reader} replicas
 */
function exactReader(replicas) {
  return {
    query(text, values, options) {
      if (!INDEXED_ORDER.test(text))
        throw new Error(
          'the RagRepository.search SQL has no "ORDER BY c.embedding <=> $3::vector" any more: update bench/benchmarks/rag.mjs',
        );
      return replicas.query(text.replace(INDEXED_ORDER, EXACT_ORDER), values, options);
    },
  };
}

/**
 * Collection, ingestion and documents through the repository, then the chunks by multi-row
 * INSERTs of `insertBatch` rows with the HNSW index dropped, then the index as the migration
 * defines it.
 */
async function load(primary, space, tenantId, settings, log) {
  const { rows: indexRows } = await primary.query(
    `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'chunks_embedding'`,
  );
  if (!indexRows[0]) throw new Error('no chunks_embedding index: did migration 006_rag run?');
  // The parent's definition reads "ON ONLY public.chunks", which creates an invalid index on the
  // parent alone; without ONLY, every partition gets its index, as with the migration.
  const createIndex = indexRows[0].indexdef.replace(' ON ONLY ', ' ON ');
  const { rows: versionRows } = await primary.query(
    `SELECT extversion, 'vector'::regtype::oid AS oid FROM pg_extension WHERE extname = 'vector'`,
  );
  const vectorOid = Number(versionRows[0].oid);
  await primary.query('DROP INDEX chunks_embedding');

  const repo = new rag.RagRepository(primary);
  const collection = await repo.ensureCollection(tenantId, 'bench', 'bench-clustered', settings.dimensions);
  const documentCount = Math.ceil(settings.chunks / settings.chunksPerDocument);
  const { ingestion, documentIds } = await repo.createIngestion(
    collection,
    Array.from({ length: documentCount }, (_, i) => ({
      title: `bench document ${i}`,
      contentType: 'text/plain',
      content: `bench document ${i}`,
      metadata: {},
    })),
    { maxTokens: Math.ceil(settings.contentChars / 4), overlapTokens: 0 },
  );

  log(
    `loading ${settings.chunks} chunks (${settings.dimensions} dimensions, ${settings.clusters} clusters) ` +
      `in batches of ${settings.insertBatch}, HNSW index dropped`,
  );
  const next = space.stream(settings.seed + 1);
  const words = mulberry32(settings.seed + 4);
  let insertMs = 0;
  for (let start = 0; start < settings.chunks; start += settings.insertBatch) {
    const n = Math.min(settings.insertBatch, settings.chunks - start);
    const docs = [];
    const seqs = [];
    const contents = [];
    const vectors = [];
    for (let j = 0; j < n; j++) {
      const i = start + j;
      docs.push(documentIds[Math.floor(i / settings.chunksPerDocument)]);
      seqs.push(i % settings.chunksPerDocument);
      contents.push(filler(words, settings.contentChars));
      vectors.push(next());
    }
    const t0 = performance.now();
    await primary.query(
      `INSERT INTO chunks (tenant_id, collection_id, document_id, seq, content, tokens, embedding)
       SELECT $1, $2, c.document_id, c.seq, c.content, $3, c.embedding
       FROM unnest($4::uuid[], $5::int[], $6::text[], $7::vector[]) AS c(document_id, seq, content, embedding)`,
      [
        tenantId,
        collection.id,
        Math.ceil(settings.contentChars / 4),
        docs,
        seqs,
        contents,
        binaryVectors(vectorOid, vectors, settings.dimensions),
      ],
    );
    insertMs += performance.now() - t0;
  }
  await primary.query(
    `UPDATE documents SET status = 'ready', chunks = (SELECT count(*) FROM chunks c
       WHERE c.tenant_id = $1 AND c.document_id = documents.id)
     WHERE tenant_id = $1 AND ingestion_id = $2`,
    [tenantId, ingestion.id],
  );
  await primary.query(
    `UPDATE ingestions SET documents_done = documents_total, chunks_done = $3 WHERE tenant_id = $1 AND id = $2`,
    [tenantId, ingestion.id, settings.chunks],
  );
  await repo.finishIngestion(tenantId, ingestion.id);

  log(`building the HNSW index (maintenance_work_mem ${settings.maintenanceWorkMem})`);
  const client = await primary.connect();
  let buildMs;
  try {
    await client.query(`SET maintenance_work_mem = '${settings.maintenanceWorkMem}'`);
    const t0 = performance.now();
    await client.query(createIndex);
    buildMs = performance.now() - t0;
  } finally {
    await client.query('RESET maintenance_work_mem').catch(() => undefined);
    client.release();
  }
  const { rows: sizeRows } = await primary.query(
    `SELECT (SELECT count(*) FROM chunks WHERE tenant_id = $1) AS chunks,
            (SELECT sum(pg_table_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'chunks'::regclass) AS table_bytes,
            (SELECT sum(pg_relation_size(c.oid)) FROM pg_class c JOIN pg_am a ON a.oid = c.relam
              WHERE a.amname = 'hnsw' AND c.relname LIKE 'chunks%') AS index_bytes`,
    [tenantId],
  );
  const sizes = sizeRows[0];
  log(
    `chunks inserted in ${(insertMs / 1000).toFixed(1)} s, index built in ${(buildMs / 1000).toFixed(1)} s`,
  );
  return {
    collectionId: collection.id,
    pgvector: versionRows[0].extversion,
    facts: {
      chunks: Number(sizes.chunks),
      documents: documentCount,
      insertSeconds: insertMs / 1000,
      chunksPerSecond: settings.chunks / (insertMs / 1000),
      indexBuildSeconds: buildMs / 1000,
      indexDefinition: createIndex,
      tableBytes: Number(sizes.table_bytes),
      indexBytes: Number(sizes.index_bytes),
    },
  };
}

/**
 * The clustered vector space: `clusters` random unit centres; a vector is a centre drawn
 * uniformly plus Gaussian noise of expected norm `noise`, normalised (so its cosine similarity
 * to its centre is about 1 / sqrt(1 + noise²)). Every stream has its own seed, so the data, the
 * queries and the warm-up queries are the same in every run and never identical to one another.
 * @param {RagSettings} settings
 */
function clusterSpace({ dimensions, clusters, noise, seed }) {
  const gaussian = gaussians(mulberry32(seed));
  const centres = Array.from({ length: clusters }, () =>
    normalise(Float64Array.from({ length: dimensions }, gaussian)),
  );
  const sigma = noise / Math.sqrt(dimensions);
  const stream = (streamSeed) => {
    const random = mulberry32(streamSeed);
    const g = gaussians(random);
    return () => {
      const centre = centres[Math.floor(random() * clusters)];
      const v = new Float64Array(dimensions);
      for (let d = 0; d < dimensions; d++) v[d] = centre[d] + sigma * g();
      return normalise(v);
    };
  };
  return {
    stream,
    /** `n` vectors as plain arrays (what `RagRepository.search` takes). */
    draw(n, streamSeed) {
      const next = stream(streamSeed);
      return Array.from({ length: n }, () => Array.from(next()));
    },
  };
}

/** Standard normal samples (Box-Muller) from a uniform generator. */
function gaussians(random) {
  let spare = NaN;
  return () => {
    if (!Number.isNaN(spare)) {
      const v = spare;
      spare = NaN;
      return v;
    }
    const u = 1 - random(); // (0, 1]
    const r = Math.sqrt(-2 * Math.log(u));
    const theta = 2 * Math.PI * random();
    spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
}

/** @param {Float64Array} v */
function normalise(v) {
  let sum = 0;
  for (const x of v) sum += x * x;
  const norm = Math.sqrt(sum);
  for (let d = 0; d < v.length; d++) v[d] /= norm;
  return v;
}

/** About `chars` characters of words, a chunk's text. */
function filler(random, chars) {
  let text = '';
  while (text.length < chars) text += `${WORDS[Math.floor(random() * WORDS.length)]} `;
  return text.slice(0, chars);
}

/**
 * A `vector[]` parameter in PostgreSQL's binary array format (node-postgres sends a Buffer as
 * binary), each element in pgvector's binary format: 2-byte dimensions, 2 unused bytes, then
 * big-endian float4s. Parsing 384 numbers as text per vector is most of a text load's time on PGlite.
 * @param {number} oid the `vector` type's oid (it is an extension type, so it differs between databases)
 * @param {Float64Array[]} vectors
 * @param {number} dimensions
 */
function binaryVectors(oid, vectors, dimensions) {
  const buf = Buffer.allocUnsafe(20 + vectors.length * (8 + dimensions * 4));
  let o = buf.writeInt32BE(1, 0); // one dimension
  o = buf.writeInt32BE(0, o); // no nulls
  o = buf.writeUInt32BE(oid, o);
  o = buf.writeInt32BE(vectors.length, o);
  o = buf.writeInt32BE(1, o); // lower bound
  for (const v of vectors) {
    o = buf.writeInt32BE(4 + dimensions * 4, o);
    o = buf.writeInt16BE(dimensions, o);
    o = buf.writeInt16BE(0, o);
    for (const x of v) o = buf.writeFloatBE(x, o);
  }
  return buf;
}

/**
 * Every query `rounds` times over, `callers` at a time (each starts its next when one ends).
 * Keeps each query's chunk ids (for recall) and best score (to check that the exact search is
 * exact); a query answers the same in every round.
 */
async function measure(search, queries, callers, rounds = 1) {
  const ids = new Array(queries.length);
  const best = new Array(queries.length).fill(NaN);
  const latencies = [];
  const run = await runPool(queries.length * rounds, callers, async (n) => {
    const i = n % queries.length;
    const t0 = performance.now();
    const hits = await search(queries[i]);
    latencies.push(performance.now() - t0);
    ids[i] = hits.map((h) => h.chunkId);
    best[i] = hits[0]?.score ?? NaN;
    return hits.length;
  });
  return {
    queries: queries.length,
    rounds,
    searches: queries.length * rounds,
    completed: run.samples.length,
    seconds: run.seconds,
    perSecond: run.samples.length / run.seconds,
    latencyMs: summarize(latencies),
    hitCounts: run.samples,
    errors: run.errors,
    ids,
    best,
  };
}

/** What goes into the JSON: the figures and counts, not every query's ids. */
function summary(m, k) {
  const { ids: _ids, best: _best, hitCounts, errors, ...rest } = m;
  return {
    ...rest,
    fewerHitsThanK: hitCounts.filter((n) => n < k).length,
    errors: errors.length,
    errorSamples: [...new Set(errors)].slice(0, 5),
  };
}

/**
 * |HNSW top k ∩ exact top k| / k per query: mean, min, the share of queries with all k found,
 * and how many of all the exact top k chunks were found (the mean rounds to 1 in the JSON).
 */
function recallAtK(indexed, exact, k) {
  const values = [];
  let found = 0;
  for (let i = 0; i < exact.length; i++) {
    if (!indexed[i] || !exact[i]) continue;
    const truth = new Set(exact[i]);
    const hits = indexed[i].filter((id) => truth.has(id)).length;
    found += hits;
    values.push(hits / k);
  }
  let sum = 0;
  let min = Infinity;
  let perfect = 0;
  for (const v of values) {
    sum += v;
    min = Math.min(min, v);
    if (v === 1) perfect += 1;
  }
  return {
    k,
    queries: values.length,
    mean: values.length > 0 ? sum / values.length : NaN,
    min: values.length > 0 ? min : NaN,
    perfectSharePercent: values.length > 0 ? (perfect / values.length) * 100 : NaN,
    found,
    of: values.length * k,
  };
}

/** hnsw.ef_search and hnsw.iterative_scan as the replica's sessions see them. */
async function hnswSettings(replicas) {
  const show = async (name) => (await replicas.query(`SHOW ${name}`)).rows[0]?.[name];
  return { efSearch: Number(await show('hnsw.ef_search')), iterativeScan: await show('hnsw.iterative_scan') };
}

/**
 * The plans of both searches for one query: the SQL and values the repository sends are recorded
 * and run again under EXPLAIN on the replica, so the plan is that of the measured query.
 */
async function explainBoth(primary, replicas, probe) {
  const { rows } = await replicas.query(
    `SELECT c.relname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'hnsw'`,
  );
  const hnswIndexes = rows.map((r) => r.relname);
  /** @param {(pool: import('@llmq/rag').Reader) => import('@llmq/rag').Reader} readerOver */
  const planOf = async (readerOver) => {
    /** @type {{ text: string, values: unknown[] } | undefined} */
    let seen;
    // What reaches the replica pool is recorded (for the reference, after its ORDER BY was rewritten).
    const recorder = {
      query(text, values, options) {
        seen = { text, values };
        return replicas.query(text, values, options);
      },
    };
    const { tenantId, collectionId, embedding, k } = probe;
    await new rag.RagRepository(primary, readerOver(recorder)).search(tenantId, collectionId, embedding, {
      k,
    });
    if (!seen) throw new Error('the search sent no query');
    const { rows: plan } = await replicas.query(`EXPLAIN (FORMAT JSON) ${seen.text}`, seen.values);
    return planNodes(plan[0]['QUERY PLAN'][0].Plan);
  };
  const llmq = await planOf((pool) => pool);
  const reference = await planOf(exactReader);
  return { hnswIndexes, llmq, reference };
}

/** "Index Scan using chunks_p5_embedding_idx on chunks_p5", ... depth first. */
function planNodes(node, out = []) {
  const parts = [node['Node Type']];
  if (node['Index Name']) parts.push(`using ${node['Index Name']}`);
  if (node['Relation Name']) parts.push(`on ${node['Relation Name']}`);
  out.push(parts.join(' '));
  for (const child of node.Plans ?? []) planNodes(child, out);
  return out;
}

function planProblems({ hnswIndexes, llmq, reference }) {
  const usesHnsw = (nodes) => nodes.some((n) => hnswIndexes.some((name) => n.includes(`using ${name} `)));
  const problems = [];
  if (!usesHnsw(llmq)) problems.push(`the HNSW search's plan uses no HNSW index: ${llmq.join(' > ')}`);
  if (usesHnsw(reference))
    problems.push(`the exact search's plan uses an HNSW index: ${reference.join(' > ')}`);
  return problems;
}

function searchProblems(name, m, k) {
  const problems = [];
  if (m.completed === 0) problems.push(`${name}: no query completed`);
  if (m.errors.length > 0)
    problems.push(
      `${name}: ${m.errors.length} queries failed: ${[...new Set(m.errors)].slice(0, 3).join('; ')}`,
    );
  if (m.warmupErrors > 0) problems.push(`${name}: ${m.warmupErrors} warm-up queries failed`);
  const short = m.hitCounts.filter((n) => n < k).length;
  if (short > 0) problems.push(`${name}: ${short} queries returned fewer than ${k} chunks`);
  return problems;
}

/** The exact search must never be beaten: otherwise it is not exact, and recall means nothing. */
function exactnessProblems(indexed, exact) {
  let beaten = 0;
  for (let i = 0; i < exact.best.length; i++) {
    if (indexed.best[i] > exact.best[i] + 1e-6) beaten += 1;
  }
  return beaten > 0
    ? [`the HNSW search found a nearer chunk than the exact search for ${beaten} queries`]
    : [];
}
