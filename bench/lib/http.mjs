import http from 'node:http';

/**
 * A tiny HTTP client on node:http with a keep-alive agent, so neither side of a TTFT
 * comparison pays for new TCP connections or for fetch's extra layers.
 */
export function createAgent() {
  return new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
}

/**
 * @param {{ agent: http.Agent, method?: string, url: string, headers?: Record<string,string>, body?: unknown, timeoutMs?: number }} o
 * @returns {Promise<{ status: number, json: any, text: string }>}
 */
export function requestJson({ agent, method = 'POST', url, headers = {}, body, timeoutMs = 30_000 }) {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: requestHeaders('application/json', payload, headers),
        timeout: timeoutMs,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json = null;
          try {
            json = JSON.parse(text);
          } catch {
            // not JSON; the caller reports status and text
          }
          resolve({ status: res.statusCode ?? 0, json, text });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * Sends a request whose answer is `text/event-stream` and hands every event to `onEvent` as its
 * blank line arrives. Resolves when the server ends the stream, or as soon as `onEvent` returns
 * true (the connection is then destroyed rather than reused).
 *
 * @param {{ agent: http.Agent, method?: string, url: string, headers?: Record<string,string>, body?: unknown, timeoutMs?: number,
 *           onEvent: (event: { event: string, data: string }) => boolean | void }} o
 * @returns {Promise<{ status: number, events: number, text?: string }>}
 */
export function streamEvents({
  agent,
  method = 'GET',
  url,
  headers = {},
  body,
  timeoutMs = 30_000,
  onEvent,
}) {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: requestHeaders('text/event-stream', payload, headers),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () =>
            finish(null, { status, events: 0, text: Buffer.concat(chunks).toString('utf8').slice(0, 500) }),
          );
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        let events = 0;
        res.on('data', (text) => {
          buffer += text;
          let end;
          while ((end = frameEnd(buffer)) !== null) {
            const frame = buffer.slice(0, end.at);
            buffer = buffer.slice(end.at + end.length);
            const event = parseFrame(frame);
            if (event === null) continue;
            events += 1;
            if (onEvent(event) === true) {
              req.destroy();
              finish(null, { status, events });
              return;
            }
          }
        });
        res.on('end', () => finish(null, { status, events }));
        res.on('error', (error) => finish(error));
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish(new Error(`${method} ${url}: stream not finished after ${timeoutMs} ms`));
    }, timeoutMs);
    let settled = false;
    function finish(error, value) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(value);
    }
    req.on('error', (error) => finish(error));
    req.end(payload);
  });
}

/** Where the first complete frame ends (a blank line, LF or CRLF), or null. */
function frameEnd(buffer) {
  const lf = buffer.indexOf('\n\n');
  const crlf = buffer.indexOf('\r\n\r\n');
  if (lf < 0 && crlf < 0) return null;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { at: crlf, length: 4 };
  return { at: lf, length: 2 };
}

/** One SSE frame to `{event, data}`; comments and frames without data (e.g. `retry:`) are null. */
function parseFrame(frame) {
  let event = 'message';
  const data = [];
  for (const raw of frame.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return data.length === 0 ? null : { event, data: data.join('\n') };
}

/** Accept, the JSON body's type and length (when there is a body), then the caller's headers. */
function requestHeaders(accept, payload, headers) {
  return {
    accept,
    ...(payload === undefined
      ? {}
      : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
    ...headers,
  };
}

/**
 * Opens an SSE stream and leaves it open: resolves once the server has answered 200 and sent
 * its first bytes (so its handler has run), with `close()` to end it from this side. A stream
 * the server ends or drops before `close()` is counted in its tracker's `closedByServer`
 * (see {@link streamTracker}).
 * @param {{ agent: http.Agent, url: string, headers?: Record<string,string>, timeoutMs?: number,
 *           tracker: ReturnType<typeof streamTracker> }} o
 * @returns {Promise<{ close: () => void }>}
 */
export function openIdleStream({ agent, url, headers = {}, timeoutMs = 30_000, tracker }) {
  return new Promise((resolve, reject) => {
    let opened = false;
    let closing = false;
    const req = http.request(url, {
      method: 'GET',
      agent,
      headers: requestHeaders('text/event-stream', undefined, headers),
    });
    const timer = setTimeout(
      () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        clearTimeout(timer);
        res.resume();
        req.destroy();
        reject(new Error(`GET ${url} answered ${res.statusCode}`));
        return;
      }
      res.on('data', () => {
        if (opened) return;
        opened = true;
        clearTimeout(timer);
        resolve({
          close: () => {
            closing = true;
            req.destroy();
          },
        });
      });
      res.on('close', () => {
        if (opened && !closing) tracker.closedByServer += 1;
      });
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      if (!opened) reject(error);
    });
    req.end();
  });
}

/** Counts the streams opened by {@link openIdleStream} that the server closed. */
export function streamTracker() {
  return { closedByServer: 0 };
}
