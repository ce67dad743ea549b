/**
 * One jest configuration for the whole repository.
 *
 * The code compiles to CommonJS (tsconfig.base.json: module Node16, no "type": "module"),
 * so jest runs in its default CommonJS mode; @swc/jest strips types. Workspace packages
 * resolve to their TypeScript sources, so tests never run against a stale dist/.
 * Processes that tests spawn (API, worker, simulator) run the built dist/ output, which
 * `npm test` builds first. If an ESM-only dependency is ever needed, list it in
 * ESM_ONLY below and swc transforms it to CommonJS as well.
 */
const ESM_ONLY = [];

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/apps', '<rootDir>/packages', '<rootDir>/bench', '<rootDir>/infra', '<rootDir>/loadtest'],
  testMatch: ['**/test/**/*.test.ts'],
  transform: {
    '^.+\\.(t|j)sx?$': [
      '@swc/jest',
      { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } },
    ],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${ESM_ONLY.join('|') || '__none__'})/)`],
  moduleNameMapper: {
    '^@llmq/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
    '^@llmq/([a-z-]+)/testing$': '<rootDir>/packages/$1/src/testing/index.ts',
  },
  testTimeout: 60_000,
  maxWorkers: 2,
};
