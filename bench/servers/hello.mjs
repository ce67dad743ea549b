#!/usr/bin/env node
// The reference for accept throughput: the cheapest useful Express 5 route, in its own process
// like the API, with Express's defaults. It prints its URL once it listens (PORT=0: any free port).
import express from 'express';

const app = express();
app.get('/hello', (_req, res) => {
  res.json({ hello: 'world' });
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', (error) => {
  if (error) throw error;
  console.log(`bench-hello listening on http://127.0.0.1:${server.address().port}`);
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
