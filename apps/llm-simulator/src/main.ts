import { parseConfig } from './config';
import { createSimulator } from './simulator';

/** Give open streams this long to be torn down before exiting anyway. */
const SHUTDOWN_GRACE_MS = 5_000;

async function main(): Promise<void> {
  const config = parseConfig(process.env);
  const simulator = createSimulator(config.simulator);
  const { url } = await simulator.listen(config.port, config.host);
  // Test fixtures wait for exactly this line on stdout; keep its wording.
  console.log(`llm-simulator listening on ${url}`);

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS).unref();
    simulator.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('llm-simulator: failed to close', error);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
