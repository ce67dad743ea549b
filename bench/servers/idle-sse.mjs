#!/usr/bin/env node
// The reference for idle SSE stream memory: the cheapest Express 5 route that holds an event stream
// open, doing for an idle client what llmq's `GET /api/jobs/:id/stream` does (the same headers, the
// `retry` line, a heartbeat comment every SSE_HEARTBEAT_MS, llmq's default 15 s) and nothing else:
// no authentication, no job, no event subscription. In its own process, like the API, with Express's
// defaults. `GET /stats` tells how many streams are open. It prints its URL once it listens.
import express from 'express';

const heartbeatMs = Number(process.env.SSE_HEARTBEAT_MS ?? 15_000);
let open = 0;

const app = express();
app.get('/stream', (req, res) => {
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache, no-transform');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no');
  res.flushHeaders();
  res.write('retry: 2000\n\n');
  open += 1;
  const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), heartbeatMs);
  req.on('close', () => {
    clearInterval(heartbeat);
    open -= 1;
    if (!res.writableEnded) res.end();
  });
});
app.get('/stats', (_req, res) => {
  res.json({ open });
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', (error) => {
  if (error) throw error;
  console.log(`bench-idle-sse listening on http://127.0.0.1:${server.address().port}`);
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
