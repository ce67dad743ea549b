/**
 * Everything the run starts registers here, so that it is stopped on success, on error and on
 * Ctrl-C. If the process dies anyway, the `exit` hook SIGKILLs every child it still knows of,
 * so no Redis, PGlite or API process outlives the bench.
 */
export class Resources {
  /** @type {{ name: string, stop: () => Promise<unknown>, pids: () => (number | undefined)[] }[]} */
  #items = [];

  constructor() {
    process.once('exit', () => this.killSync());
  }

  /**
   * @param {string} name
   * @param {() => Promise<unknown>} stop
   * @param {() => (number | undefined)[]} pids the processes to SIGKILL if the bench itself dies
   */
  add(name, stop, pids) {
    const item = { name, stop, pids };
    this.#items.push(item);
    return async () => {
      const i = this.#items.indexOf(item);
      if (i < 0) return;
      this.#items.splice(i, 1);
      await stop();
    };
  }

  /** Stops everything still registered, newest first; never throws. */
  async stopAll() {
    const items = this.#items.splice(0).reverse();
    for (const item of items) {
      await item
        .stop()
        .catch((error) => console.error(`[bench] stopping ${item.name} failed: ${error?.message ?? error}`));
    }
  }

  killSync() {
    for (const item of this.#items) {
      for (const pid of item.pids()) {
        if (pid === undefined) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }
}
