import { errorResponse } from '../src/pglite-guard';
import { assertServerBuilt, runFixture } from './helpers';

beforeAll(() => assertServerBuilt()); // the fixture runs dist/

describe('the guard between pglite-socket and PGlite', () => {
  it('reports a throw inside PGlite, after which pglite-socket runs no other query', async () => {
    const report = await runFixture('queue-failure');
    expect(report.before).toEqual([{ ok: 1 }]);
    expect(report.failuresBefore).toBe(0);
    expect(report.injected).toBe('rejected: Connection terminated unexpectedly');
    expect(report.failures).toEqual(['injected WASM trap']);
    // the upstream defect (electric-sql/pglite#1046) the report exists for: the queue is stuck
    expect(report.after).toBe('rejected: Connection terminated due to connection timeout');
  });

  it('encodes a protocol ErrorResponse', () => {
    const bytes = Buffer.from(errorResponse('FATAL', '08P01', 'bad'));
    expect(bytes.subarray(0, 1).toString()).toBe('E');
    expect(bytes.readInt32BE(1)).toBe(bytes.length - 1);
    expect(bytes.subarray(5).toString('latin1')).toBe('SFATAL\0VFATAL\0C08P01\0Mbad\0\0');
  });
});
