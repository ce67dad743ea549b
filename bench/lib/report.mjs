import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { round } from './stats.mjs';

const num = (v, digits = 1) =>
  Number.isFinite(v)
    ? v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : 'n/a';
const times = (v) => (Number.isFinite(v) ? `${v.toFixed(3)}x` : 'n/a');
const signed = (v, unit) => (Number.isFinite(v) ? `${v >= 0 ? '+' : ''}${v.toFixed(1)} ${unit}` : '');

/** The human report: machine, settings, one table of figures and ratios, checks and problems. */
export function formatReport(report) {
  const { machine, benchmarks: b } = report;
  const out = [];
  out.push(`llmq bench (${report.mode} mode, ${report.startedAt})`);
  out.push(
    `machine: ${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, Node ${machine.node}, ` +
      `${machine.platform}, ${machine.cpuBusyBeforePercent}% CPU busy before the run${machine.commit ? `, commit ${machine.commit}` : ''}`,
  );
  out.push(
    `note: the load generator and every server share these ${machine.cores} cores; the database is PGlite`,
  );
  out.push('      (single-threaded), so accept throughput here is a floor, not a ceiling.');
  if (machine.cpuBusyBeforePercent > 20) {
    out.push(
      `warning: ${machine.cpuBusyBeforePercent}% of the CPU was busy before the bench started anything: ` +
        'other work shares the cores, so expect noisy figures',
    );
  }
  out.push('');

  const rows = [];
  if (b.accept) {
    const s = b.accept.settings;
    out.push(
      `accept: autocannon, ${s.connections} connections, ${s.seconds} s measured after ${s.warmupSeconds} s warm-up, ` +
        'a distinct prompt per request;',
    );
    out.push(
      `        llmq stack started with 0 workers (nothing else competes for the cores); reference: Express 5 GET /hello in its own process`,
    );
    if (b.accept.ok) {
      const { llmq, reference, ratios } = b.accept;
      rows.push([
        'accept throughput (req/s)',
        num(llmq.rps, 0),
        num(reference.rps, 0),
        times(ratios.throughput),
        signed(llmq.rps - reference.rps, 'req/s'),
      ]);
      rows.push([
        'accept latency p50 (ms)',
        num(llmq.latencyMs.p50, 2),
        num(reference.latencyMs.p50, 2),
        times(ratios.p50),
        signed(llmq.latencyMs.p50 - reference.latencyMs.p50, 'ms'),
      ]);
      rows.push([
        'accept latency p99 (ms)',
        num(llmq.latencyMs.p99, 2),
        num(reference.latencyMs.p99, 2),
        times(ratios.p99),
        signed(llmq.latencyMs.p99 - reference.latencyMs.p99, 'ms'),
      ]);
    } else rows.push(['accept', 'FAILED', '', '', '']);
  }
  if (b.ttft) {
    const s = b.ttft.settings;
    out.push(
      `ttft:   ${Math.min(s.concurrency, s.jobs)} concurrent streams, ${s.jobs} jobs each way after ${s.warmupJobs} warm-up, max_tokens ${s.maxTokens}; ` +
        `${s.workers} worker(s), WORKER_CONCURRENCY=${s.workerConcurrency};`,
    );
    out.push(
      `        simulator SIM_TTFT_MS=${s.simulator.ttftMs} SIM_TOKEN_MS=${s.simulator.tokenMs} SIM_JITTER=${s.simulator.jitter}; ` +
        "reference: the simulator's /v1/chat/completions (stream) called directly",
    );
    if (b.ttft.ok) {
      const { llmq, direct, ratios, addedMs } = b.ttft;
      rows.push([
        'time to first token p50 (ms)',
        num(llmq.ttftMs.p50),
        num(direct.ttftMs.p50),
        times(ratios.p50),
        signed(addedMs.p50, 'ms added'),
      ]);
      rows.push([
        'time to first token p99 (ms)',
        num(llmq.ttftMs.p99),
        num(direct.ttftMs.p99),
        times(ratios.p99),
        signed(addedMs.p99, 'ms added'),
      ]);
    } else rows.push(['time to first token', 'FAILED', '', '', '']);
  }
  if (b.routing) {
    const s = b.routing.settings;
    const speeds = s.backends.map((x) => `${x.id} ${x.ttftMs} ms + ${x.tokenMs} ms/token`).join(', ');
    out.push(
      `routing: an LlmClient over ${s.backends.length} simulators serving one model (${speeds}, SIM_JITTER=${s.backends[0].jitter});`,
    );
    out.push(
      `         ${s.callers} callers, ${s.requests} requests each way after ${s.warmupRequests} warm-up, max_tokens ${s.maxTokens}, a fresh client each way;`,
    );
    out.push("         llmq: routing 'p2c-peak-ewma' (the default); reference: routing 'round-robin'");
    if (b.routing.ok) {
      const { p2c, reference, ratios } = b.routing;
      rows.push([
        'slow backend share (%)',
        num(p2c.slowSharePercent),
        num(reference.slowSharePercent),
        times(ratios.slowShare),
        signed(p2c.slowSharePercent - reference.slowSharePercent, 'pp'),
      ]);
      for (const [label, key] of [
        ['request latency p50 (ms)', 'p50'],
        ['request latency p99 (ms)', 'p99'],
        ['request latency mean (ms)', 'mean'],
      ]) {
        rows.push([
          label,
          num(p2c.latencyMs[key]),
          num(reference.latencyMs[key]),
          times(ratios[key]),
          signed(p2c.latencyMs[key] - reference.latencyMs[key], 'ms'),
        ]);
      }
    } else rows.push(['routing', 'FAILED', '', '', '']);
  }
  if (b.cache) cacheRows(b.cache, out, rows);
  if (b.limiter) limiterRows(b.limiter, out, rows);
  if (b.rag) ragRows(b.rag, out, rows);
  if (b.workers) workersRows(b.workers, out, rows);
  if (b['sse-memory']) sseMemoryRows(b['sse-memory'], out, rows);
  if (b.relay) relayRows(b.relay, out, rows);
  out.push('');
  out.push(...table(['figure', 'llmq', 'reference', 'ratio', 'llmq - reference'], rows));
  out.push('');

  if (b.accept?.ok) {
    const a = b.accept;
    out.push(
      `accept checks: ${num(a.llmq.requests, 0)} answers in ${a.llmq.seconds} s, statuses ${JSON.stringify(a.llmq.statuses)}, ` +
        `${a.llmq.errors} transport errors; ${num(a.durability.accepted202, 0)} 202s (incl. warm-up), ${num(a.durability.jobRows, 0)} job rows ` +
        '(rows may exceed 202s by the requests in flight when the generator stopped)',
    );
  }
  if (b.ttft?.ok) {
    const t = b.ttft.llmq;
    out.push(
      `ttft checks: llmq ${t.samples}/${t.samples + t.failed} streams completed, ${num(t.upstreamCallsPerJob, 2)} upstream calls per job; ` +
        'where the llmq TTFT goes (p50 / p99 from sending the POST):',
    );
    out.push(
      `  202 received                  ${num(t.acceptMs.p50).padStart(8)} / ${num(t.acceptMs.p99)} ms`,
    );
    out.push(
      `  status in_progress received   ${num(t.toInProgressMs.p50).padStart(8)} / ${num(t.toInProgressMs.p99)} ms`,
    );
    out.push(
      `  first token received          ${num(t.ttftMs.p50).padStart(8)} / ${num(t.ttftMs.p99)} ms ` +
        `(in_progress to first token p50 ${num(t.inProgressToFirstTokenMs.p50)} ms; the simulator alone takes ${b.ttft.settings.simulator.ttftMs} ms)`,
    );
  }
  if (b.routing?.ok) out.push(...routingChecks(b.routing));
  if (b.cache?.ok) out.push(...cacheChecks(b.cache));
  if (b.limiter?.ok) out.push(...limiterChecks(b.limiter));
  if (b.rag?.ok) out.push(...ragChecks(b.rag));
  if (b.workers?.ok) out.push(...workersChecks(b.workers));
  if (b['sse-memory']?.ok) out.push(...sseMemoryChecks(b['sse-memory']));
  if (b.relay?.ok) out.push(...relayChecks(b.relay));
  for (const [name, result] of Object.entries(b)) {
    if (result.error) out.push(`${name}: FAILED: ${result.error}`);
    for (const p of result.problems ?? []) out.push(`${name}: problem: ${p}`);
    for (const [service, log] of Object.entries(result.serviceLogs ?? {})) {
      out.push(
        `${name}: ${service} logged ${log.lines} line(s) at warn or above, last: ${log.last.at(-1)?.slice(0, 300)}`,
      );
    }
  }
  return out.join('\n');
}

/** The cache's settings (to `out`) and figures (to `rows`). */
function cacheRows(c, out, rows) {
  const s = c.settings;
  const w = s.workload;
  out.push(
    `cache:  hits: autocannon, ${s.hits.connections} connections, ${s.hits.seconds} s measured after ${s.hits.warmupSeconds} s warm-up, ` +
      'one warmed request (temperature 0) answered from Redis;',
  );
  out.push('        reference: Express 5 GET /hello in its own process, same generator and connections;');
  out.push(
    `        workload: ${w.requests} requests (${num(w.repeatShare * 100, 0)}% repeat earlier prompts), temperature 0, max_tokens ${s.maxTokens}, ` +
      `${w.callers} callers each waiting for its answer;`,
  );
  out.push(
    `        ${s.workers} workers, simulator SIM_TTFT_MS=${s.simulator.ttftMs} SIM_TOKEN_MS=${s.simulator.tokenMs}; ` +
      'reference: the same workload with Cache-Control: no-cache, no-store',
  );
  if (!c.ok) {
    rows.push(['cache', 'FAILED', '', '', '']);
    return;
  }
  const { hits, workload, ratios } = c;
  const [llmq, ref] = [hits.llmq, hits.reference];
  rows.push([
    'cache hit throughput (req/s)',
    num(llmq.rps, 0),
    num(ref.rps, 0),
    times(ratios.hitThroughput),
    signed(llmq.rps - ref.rps, 'req/s'),
  ]);
  for (const [label, key, r] of [
    ['cache hit latency p50 (ms)', 'p50', ratios.hitP50],
    ['cache hit latency p99 (ms)', 'p99', ratios.hitP99],
  ]) {
    rows.push([
      label,
      num(llmq.latencyMs[key], 2),
      num(ref.latencyMs[key], 2),
      times(r),
      signed(llmq.latencyMs[key] - ref.latencyMs[key], 'ms'),
    ]);
  }
  rows.push([
    'upstream calls per request',
    num(workload.cached.upstreamCalls / workload.requests, 3),
    num(workload.reference.upstreamCalls / workload.requests, 3),
    times(ratios.upstreamCalls),
    `${num(workload.savedCalls, 0)} calls saved (${num(workload.savedPercent)}%)`,
  ]);
  rows.push([
    'workload answer time mean (ms)',
    num(workload.cached.answerMs.mean),
    num(workload.reference.answerMs.mean),
    times(ratios.answerMean),
    signed(workload.cached.answerMs.mean - workload.reference.answerMs.mean, 'ms'),
  ]);
}

/** How every hit and every workload request was answered, and what the simulator counted. */
function cacheChecks(c) {
  const { hits, workload: w } = c;
  const h = hits.llmq;
  const { cached, reference } = w;
  const q = cached.queuedJobs;
  return [
    `cache checks: hits: ${num(h.requests, 0)} answers in ${h.seconds} s, statuses ${JSON.stringify(h.statuses)}, ` +
      `bodies ${JSON.stringify(h.bodies)}, ${h.errors} transport errors; ${num(hits.jobRows, 0)} completed job rows recorded ` +
      `(one per hit, warm-ups included); the request was warmed in ${hits.warmup.tries} submission(s): ${hits.warmup.answers.join(', ')}`,
    `  workload with the cache: ${cached.statuses['200'] ?? 0} answered 200 from the cache ${JSON.stringify(cached.sources)}, ` +
      `${cached.statuses['202'] ?? 0} queued (202): ${q.upstream} called upstream, ${q.withoutUpstreamCall} did not ` +
      '(coalesced with an identical job in flight, or found in the cache by the worker)',
    `  upstream calls counted by the simulator: ${cached.upstreamCalls} with the cache, ${reference.upstreamCalls} without; ` +
      `${w.repeats} repeats of ${w.distinctPrompts} distinct prompts, ${cached.repeatsWhileFirstInFlight} of them sent ` +
      'while their first request was still unanswered; ' +
      `${cached.answered}/${w.requests} and ${reference.answered}/${w.requests} answered`,
  ];
}

/** The limiter's settings (to `out`) and figures (to `rows`). */
function limiterRows(l, out, rows) {
  const s = l.settings;
  out.push(
    `limiter: KeyLimiter.admit (one Lua call, lua/admit-8.lua) from this process over one ioredis connection (the API's options), ` +
      `${s.inFlight} calls in flight, ${s.seconds} s measured after ${s.warmupSeconds} s warm-up;`,
  );
  out.push(
    `         every limit on and every call admitted, a distinct job id per call, a new tenant every ${num(s.admissionsPerTenant, 0)} admissions;`,
  );
  out.push(
    "         reference: GET of one key on the same connection at the same concurrency; a redis-server of its own (AOF, as the stack's)",
  );
  if (!l.ok) {
    rows.push(['limiter', 'FAILED', '', '', '']);
    return;
  }
  const { llmq, reference, ratios } = l;
  rows.push([
    'limiter admissions (calls/s)',
    num(llmq.perSecond, 0),
    num(reference.perSecond, 0),
    times(ratios.throughput),
    signed(llmq.perSecond - reference.perSecond, 'calls/s'),
  ]);
  for (const [label, key] of [
    ['limiter admission latency p50 (ms)', 'p50'],
    ['limiter admission latency p99 (ms)', 'p99'],
  ]) {
    rows.push([
      label,
      num(llmq.latencyMs[key], 2),
      num(reference.latencyMs[key], 2),
      times(ratios[key]),
      signed(llmq.latencyMs[key] - reference.latencyMs[key], 'ms'),
    ]);
  }
}

/** What every admission decided, and where the time of a call goes (Redis' own time, CPU of both processes). */
function limiterChecks(l) {
  const { llmq, reference, redis } = l;
  const mib = (bytes) => `${num(bytes / 2 ** 20)} MiB`;
  const per = (m) =>
    `${num(m.redisUsecPerCall)} µs in Redis (commandstats), CPU ${num(m.cpuUsecPerCall.redis)} µs Redis + ${num(m.cpuUsecPerCall.client)} µs this process`;
  return [
    `limiter checks: ${num(llmq.calls, 0)} admissions in ${num(llmq.seconds, 2)} s and ${num(reference.calls, 0)} GETs in ${num(reference.seconds, 2)} s, ` +
      `${llmq.errors + reference.errors} errors; decisions (warm-up included) ${JSON.stringify(llmq.decisions)} over ${llmq.tenants} tenants; ` +
      `Redis ${redis.version}, used memory ${mib(redis.usedMemoryBefore)} before, ${mib(redis.usedMemoryAfter)} after`,
    `  per call: admit ${per(llmq)}; GET ${per(reference)}`,
    `  Redis' ceiling (1 s / its CPU per call): ${num(1e6 / llmq.cpuUsecPerCall.redis, 0)} admissions/s, ` +
      `${num(1e6 / reference.cpuUsecPerCall.redis, 0)} GETs/s`,
  ];
}

/** The RAG search's settings (to `out`) and figures (to `rows`). */
function ragRows(r, out, rows) {
  const s = r.settings;
  out.push(
    `rag:    RagRepository.search (top ${s.k}) over a ReplicaPool, ${s.callers} callers, ${s.queries} queries each way after ` +
      `${s.warmupQueries} warm-up (HNSW: ${s.hnswRounds} time(s) over);`,
  );
  out.push(
    `        ${num(s.chunks, 0)} chunks of ${s.dimensions} dimensions (${num(s.clusters, 0)} clusters, noise ${s.noise}, seed ${s.seed}) ` +
      "in one tenant's collection, HNSW (vector_cosine_ops) built after the load;",
  );
  out.push(
    '        reference: the same search with its ORDER BY on an expression no index matches (exact search, every distance computed);',
  );
  out.push(
    '        one PGlite server (pgvector) is primary and replica: the native PostgreSQL here has no pgvector',
  );
  if (!r.ok) {
    rows.push(['rag', 'FAILED', '', '', '']);
    return;
  }
  const { llmq, reference, ratios, recall, database } = r;
  rows.push([
    'rag search throughput (queries/s)',
    num(llmq.perSecond),
    num(reference.perSecond),
    times(ratios.throughput),
    signed(llmq.perSecond - reference.perSecond, 'queries/s'),
  ]);
  for (const [label, key] of [
    ['rag search latency p50 (ms)', 'p50'],
    ['rag search latency p99 (ms)', 'p99'],
  ]) {
    rows.push([
      label,
      num(llmq.latencyMs[key], 2),
      num(reference.latencyMs[key], 2),
      times(ratios[key]),
      signed(llmq.latencyMs[key] - reference.latencyMs[key], 'ms'),
    ]);
  }
  rows.push([
    `rag recall@${recall.k}`,
    num(recall.mean, 4),
    num(1, 4),
    times(ratios.recall),
    `min ${num(recall.min, 2)}, ef_search ${database.efSearch}`,
  ]);
}

/** How the data were loaded and indexed, what the planner chose, and where the reads went. */
function ragChecks(r) {
  const { load: l, recall, database: d, plans, llmq, reference } = r;
  const mib = (bytes) => `${num(bytes / 2 ** 20, 0)} MiB`;
  return [
    `rag checks: ${num(l.chunks, 0)} chunks (${num(l.documents, 0)} documents) inserted in ${num(l.insertSeconds)} s ` +
      `(${num(l.chunksPerSecond, 0)} chunks/s, HNSW index dropped); index built in ${num(l.indexBuildSeconds)} s ` +
      `(maintenance_work_mem ${r.settings.maintenanceWorkMem}), ANALYZE ${num(l.analyzeSeconds)} s; ` +
      `table ${mib(l.tableBytes)}, HNSW index ${mib(l.indexBytes)}`,
    `  pgvector ${d.pgvector}, hnsw.ef_search ${d.efSearch}, hnsw.iterative_scan ${d.iterativeScan}; recall@${recall.k}: ` +
      `${num(recall.found, 0)} of the ${num(recall.of, 0)} exact top-${recall.k} chunks found, all ${recall.k} for ` +
      `${num(recall.perfectSharePercent)}% of ${recall.queries} queries, the worst query ${num(recall.min, 2)}`,
    `  plan, HNSW: ${plans.llmq.join(' > ')}`,
    `  plan, exact: ${plans.reference.join(' > ')}`,
    `  plan, HNSW search before ANALYZE (nothing analyzes by itself on PGlite): ${plans.llmqBeforeAnalyze.join(' > ')}`,
    `  ${num(llmq.completed, 0)}/${num(llmq.searches, 0)} HNSW and ${num(reference.completed, 0)}/${num(reference.searches, 0)} exact searches answered, ` +
      `${llmq.errors + reference.errors} errors; reads on the replica pool's primary: ${d.readsOnPrimary}, ` +
      `replica ${d.replicaHealthy ? 'healthy' : 'REMOVED'} at the end (it is the same PGlite server)`,
  ];
}

/** Where each mode's requests went (the client's results / the simulator's count) and what it believed. */
function routingChecks(r) {
  const { expectedShare, settings } = r;
  const out = [
    `routing checks: the slow backend's share is ${num(expectedShare.roundRobinPercent)}% under round-robin by construction, ` +
      `${num(expectedShare.speedProportionalPercent)}% if shares followed speed;`,
    '  the simulators have no capacity limit, so any share above 0% costs latency. Per mode:',
  ];
  for (const [name, mode] of [
    ['p2c-peak-ewma', r.p2c],
    ['round-robin', r.reference],
  ]) {
    const served = Object.entries(mode.backends)
      .map(([id, x]) => `${id} ${x.served}/${x.simulatorRequests}`)
      .join(', ');
    const est = (at) =>
      settings.backends.map(({ id }) => `${id} ${num(mode.estimates[at][id], 0)}`).join(', ');
    out.push(
      `  ${name.padEnd(13)} served (results/simulator) ${served}; ${mode.samples}/${mode.samples + mode.failed} ok, ` +
        `${num(mode.requestsPerSecond, 0)} req/s`,
    );
    out.push(
      `  ${''.padEnd(13)} Peak-EWMA estimates (ms) at start: ${est('atStartMs')}; at end: ${est('atEndMs')}`,
    );
  }
  return out;
}

/** The worker-efficiency settings (to `out`) and one figure per concurrency level (to `rows`). */
function workersRows(w, out, rows) {
  const s = w.settings;
  out.push(
    `workers: one worker process per level, WORKER_CONCURRENCY=${s.concurrency.join(', ')}; a backlog of ${s.jobsPerSlot} jobs per slot ` +
      'submitted through the API before the worker starts, max_tokens ' +
      `${s.maxTokens};`,
  );
  out.push(
    `         simulator SIM_TTFT_MS=${s.simulator.ttftMs} SIM_TOKEN_MS=${s.simulator.tokenMs} SIM_JITTER=${s.simulator.jitter}; ` +
      'jobs/s between the c-th completion and the c-th last;',
  );
  out.push(
    "         reference: the ideal c / L (Little's law), L measured on the simulator directly; the ratio is the efficiency",
  );
  if (!w.ok) {
    rows.push(['workers', 'FAILED', '', '', '']);
    return;
  }
  for (const l of w.levels) {
    rows.push([
      `worker throughput, c=${l.concurrency} (jobs/s)`,
      num(l.jobsPerSecond),
      num(l.idealJobsPerSecond),
      times(l.efficiency),
      signed(l.jobsPerSecond - l.idealJobsPerSecond, 'jobs/s'),
    ]);
  }
}

/** Upstream latency, and per level: the jobs, the measured window, time in service, slots upstream, CPU. */
function workersChecks(w) {
  const d = w.latencyMs.direct;
  const out = [
    `workers checks: L on the simulator directly ${num(d.mean)} ms mean (p50 ${num(d.p50)}, p99 ${num(d.p99)}, ` +
      `${d.count} streams; nominal ${num(w.latencyMs.nominal, 0)} ms)`,
  ];
  for (const l of w.levels) {
    const win = l.window;
    out.push(
      `  c=${l.concurrency}: ${num(l.jobs, 0)} jobs submitted in ${num(l.submitSeconds)} s, ${JSON.stringify(l.statuses)}, ` +
        `${num(l.upstreamCalls, 0)} upstream calls, all ended ${num(l.drainSeconds)} s after the worker was ready; ` +
        `measured ${win ? `${num(win.jobs, 0)} jobs in ${num(win.seconds, 2)} s` : 'nothing'}`,
    );
    out.push(
      `  ${''.padEnd(`c=${l.concurrency}`.length)}  in service (started to completed) mean ${num(l.inServiceMs.mean, 0)} ms, ` +
        `p99 ${num(l.inServiceMs.p99, 0)} ms; upstream calls in flight mean ${num(l.upstreamInFlight.mean)} ` +
        `(${num(100 * l.upstreamInFlight.shareOfSlots)}% of the slots); ${cpuLine(l.cpu)}`,
    );
  }
  return out;
}

/** `CPU (% of one core): worker 95, pglite 40, …` for a cpuMeter reading. */
function cpuLine(cpu) {
  const parts = Object.entries(cpu.coreShare).map(([name, share]) => `${name} ${num(100 * share, 0)}`);
  return `CPU (% of one core): ${parts.join(', ')}`;
}

/** The idle SSE memory settings (to `out`) and figures (to `rows`). */
function sseMemoryRows(m, out, rows) {
  const s = m.settings;
  out.push(
    `sse-memory: ${s.streams.map((n) => num(n, 0)).join(' and ')} idle SSE streams open on one API process (GET /api/jobs/:id/stream of ` +
      'queued jobs, 0 workers), heartbeat every ' +
      `${s.heartbeatMs / 1000} s;`,
  );
  out.push(
    '            memory after full GCs, minus the same before any stream, over the streams; clients in this process;',
  );
  out.push(
    '            reference: an Express 5 route holding an SSE stream open with the same headers and heartbeat (servers/idle-sse.mjs)',
  );
  if (!m.ok) {
    rows.push(['sse-memory', 'FAILED', '', '', '']);
    return;
  }
  for (const l of m.levels) {
    for (const [label, key, r] of [
      ['heap', 'heapBytesPerStream', l.ratios.heap],
      ['RSS', 'rssBytesPerStream', l.ratios.rss],
    ]) {
      rows.push([
        `idle SSE stream, ${num(l.streams, 0)} open (${label} bytes)`,
        num(l.llmq[key], 0),
        num(l.reference[key], 0),
        times(r),
        signed(l.llmq[key] - l.reference[key], 'bytes'),
      ]);
    }
  }
}

/** Baselines, how fast the streams opened, and what was left after they closed. */
function sseMemoryChecks(m) {
  const mib = (bytes) => `${num(bytes / 2 ** 20)} MiB`;
  const side = (name, x) =>
    `  ${name}: RSS ${mib(x.baseline.rssBytes)} and heap ${mib(x.baseline.heapUsedBytes)} before; ` +
    x.levels
      .map(
        (l) =>
          `${num(l.streams, 0)} open: RSS ${mib(l.rssBytes)}, heap ${mib(l.heapUsedBytes)} (opened in ${num(l.openSeconds)} s)`,
      )
      .join('; ') +
    `; all closed: RSS ${mib(x.afterClose.rssBytes)}, heap ${mib(x.afterClose.heapUsedBytes)}`;
  return [
    `sse-memory checks: ${num(m.submitted.jobs, 0)} jobs submitted in ${num(m.submitted.seconds)} s, ${num(m.submitted.stillQueued, 0)} still queued at the end; ` +
      `open files limit ${m.settings.openFilesLimit}; streams the servers closed: llmq ${m.llmq.closedByServer}, reference ${m.reference.closedByServer}`,
    side('llmq     ', m.llmq),
    side('reference', m.reference),
    `  RSS from ${num(m.levels[0].streams, 0)} to ${num(m.levels.at(-1).streams, 0)} streams, once the pages the heap had spare ` +
      `are taken: llmq ${num(m.marginalRssBytesPerStream.llmq, 0)} bytes a stream, reference ${num(m.marginalRssBytesPerStream.reference, 0)}`,
  ];
}

/** The relay's settings (to `out`) and figure (to `rows`). */
function relayRows(r, out, rows) {
  const s = r.settings;
  out.push(
    `relay:  ${s.clients} SSE clients for ${s.seconds} s each way after ${s.warmupJobs} warm-up streams, each reading one stream of ` +
      `${s.maxTokens} tokens to its end at a time; ${s.workers} worker(s), WORKER_CONCURRENCY=${s.workerConcurrency}, TOKEN_COALESCE_MS=${s.tokenCoalesceMs};`,
  );
  out.push(
    `        simulator SIM_TTFT_MS=${s.simulator.ttftMs} SIM_TOKEN_MS=${s.simulator.tokenMs} SIM_JITTER=${s.simulator.jitter}; ` +
      "reference: the same clients reading the simulator's /v1/chat/completions (stream) directly",
  );
  if (!r.ok) {
    rows.push(['relay', 'FAILED', '', '', '']);
    return;
  }
  rows.push([
    'relayed tokens per second (tokens/s)',
    num(r.llmq.tokensPerSecond, 0),
    num(r.reference.tokensPerSecond, 0),
    times(r.ratios.throughput),
    signed(r.llmq.tokensPerSecond - r.reference.tokensPerSecond, 'tokens/s'),
  ]);
}

/** Events and tokens counted both ways, stream times, and the CPU of every process. */
function relayChecks(r) {
  const { llmq, reference } = r;
  const side = (name, m) =>
    `  ${name} ${num(m.tokens, 0)} tokens read in ${m.seconds} s (the simulator wrote ${num(m.simulatorTokens, 0)}), ` +
    `${num(m.tokensPerEvent)} tokens an event; ${m.streams.completed} streams read to the end ` +
    `(${num(m.completedStreamMs.p50, 0)} ms p50, ${num(m.completedStreamMs.p99, 0)} ms p99), ${m.streams.droppedAtTheEnd} dropped ` +
    `at the end, ${m.streams.failed} failed; ${cpuLine(m.cpu)}`;
  return [
    'relay checks:',
    side('llmq:  ', llmq),
    side('direct:', reference),
    `  the API used ${num(llmq.apiCpuMsPerThousandTokens, 2)} ms of CPU per 1,000 tokens relayed: with a core of its own, ` +
      `one API process could relay about ${num(llmq.apiCeilingTokensPerSecond, 0)} tokens/s (measured rate / its share of a core)`,
  ];
}

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

export function saveJson(path, report) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, (_k, v) => (typeof v === 'number' ? round(v, 3) : v), 2)}\n`);
}
