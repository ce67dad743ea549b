/**
 * The seeded generator the benchmarks draw their workloads and data from (mulberry32: the same
 * numbers for the same seed in every run). Its one implementation is `loadtest/lib/random.js`,
 * which the load-test runner and k6 use too: it is CommonJS there because ESM (this file) can
 * import CommonJS while the runner, under jest on Node 20.10, cannot require ESM.
 */
export { mulberry32 } from '../../loadtest/lib/random.js';
