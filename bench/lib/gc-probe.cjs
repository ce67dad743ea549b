'use strict';
// Preloaded (`NODE_OPTIONS=--require …/gc-probe.cjs`) into a process whose memory the bench measures
// (lib/memory.mjs). On SIGUSR2 it runs full garbage collections and prints what is left, so a reading
// counts what the process holds, not the garbage its last requests left behind. It adds one signal
// handler and nothing else; Node 20 does not take --expose-gc in NODE_OPTIONS, hence the flag here.
const v8 = require('node:v8');
const vm = require('node:vm');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
v8.setFlagsFromString('--no-expose-gc');

let seq = 0;
process.on('SIGUSR2', () => {
  // Twice: the first collection may run finalizers that free more.
  gc();
  gc();
  const m = process.memoryUsage();
  seq += 1;
  process.stderr.write(
    `bench-gc-probe #${seq} ${JSON.stringify({ heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, rss: m.rss })}\n`,
  );
});
