/**
 * Reading one request's server-sent event stream to its end, as the two streaming scripts do.
 * Apart from `script.js` because it needs the xk6-sse extension, which the poll script must not.
 */
import sse from 'k6/x/sse';
import { metrics } from './scenario.js';

/**
 * What one event means to the transport: the first token ('token'), the stream's successful end
 * ('end'), a failure (by error type), or nothing (undefined).
 * @typedef {'token' | 'end' | { failure: string } | undefined} Step
 */

/**
 * Opens the stream and reads it until an event ends it, the deadline passes or the server closes
 * it; records time to first token and completion when it ended well.
 * @param {string} url
 * @param {import('k6/x/sse').SseParams} params
 * @param {import('./script.js').Attempt} attempt
 * @param {(event: import('k6/x/sse').SseEvent) => Step} read the transport's reading of an event
 * @returns {string | null} the error type, or null when the stream ended well
 */
export function readStream(url, params, { tags, t0, deadline }, read) {
  /** @type {number | null} */
  let firstToken = null;
  let ended = false;
  /** @type {string | null} */
  let failure = null;
  const stream = sse.open(url, params, (client) => {
    client.on('event', (event) => {
      // Heartbeat comments arrive as events too: they let a stuck stream see its deadline.
      if (Date.now() > deadline) {
        failure = 'timeout';
        client.close();
        return;
      }
      const step = read(event);
      if (step === 'token') {
        if (firstToken === null) firstToken = Date.now();
      } else if (step === 'end') {
        ended = true;
        client.close();
      } else if (step !== undefined) {
        failure = step.failure;
        client.close();
      }
    });
  });
  if (stream.error) return 'network';
  if (stream.status !== 200) return `http_${stream.status}`;
  if (failure !== null) return failure;
  if (!ended) return 'stream_ended';
  const end = Date.now();
  metrics.ttftMs.add((firstToken ?? end) - t0, tags);
  metrics.completionMs.add(end - t0, tags);
  return null;
}
