/**
 * Sits between `PGLiteSocketServer` (pglite-socket 0.2.17) and PGlite to work around
 * defects of that pairing. The socket server feeds every frontend message of every
 * connection through one `QueryQueueManager` into the single PGlite backend; this module
 * hands it a view of the database that:
 *
 * 1. Keeps an extended-protocol batch (Parse/Bind/Describe/Execute/Close ... Sync) of one
 *    connection together. The queue only gives a connection exclusive use of the backend
 *    while `db.isInTransaction()`, so messages of two connections interleave as soon as a
 *    message arrives in more than one TCP read (a parameter of a few hundred KB does
 *    that): connection B's Parse replaces the unnamed statement between A's Parse and
 *    Bind, and A gets B's statement: errors or wrong rows (electric-sql/pglite#1046,
 *    reproduced here with pg: 2 wrong results out of 1000). Reporting "in transaction"
 *    while a batch is open makes the queue serve that connection until its Sync.
 *
 * 2. Refuses frontend message types PostgresMain does not know. Postgres answers them
 *    with FATAL and exits; PGlite's protocol loop swallows that exit and spins forever,
 *    synchronously, until the process runs out of memory (electric-sql/pglite#1058;
 *    reproduced here with a 5-byte 'Z' message, and with 'p' after startup). A FATAL
 *    ErrorResponse is sent instead and PGlite never sees the message.
 *
 * 3. Reports any exception out of `execProtocolRawStream`. After one, the queue's
 *    `processing` flag stays true and it never runs another query (electric-sql/pglite#1046,
 *    "one internal throw permanently deadlocks the query queue"). Nothing in its public
 *    API can restart it, so the owner is told (`onQueueFailure`) and the server process
 *    exits for its supervisor to restart it (the queue cannot be trusted, nor PGlite,
 *    whose throw usually means a WASM trap).
 *
 * Not covered: a connection idle inside a transaction (or batch) blocks every other
 * connection until it finishes (PGlite has one session; electric-sql/pglite#985), and
 * COPY FROM STDIN through the simple Query protocol is not kept together (through the
 * extended protocol it is).
 */
import type { PGlite } from '@electric-sql/pglite';

const ch = (c: string) => c.charCodeAt(0);

/** The message types PostgresMain handles; anything else is FATAL there (and a hang in PGlite). */
const KNOWN_TYPES = new Set(['B', 'C', 'D', 'E', 'F', 'H', 'P', 'Q', 'S', 'X', 'd', 'c', 'f'].map(ch));
/** Messages after which the unnamed statement/portal state belongs to one connection until Sync. */
const OPENS_BATCH = new Set(['P', 'B', 'D', 'E', 'C'].map(ch));
/** Messages after which the backend sends ReadyForQuery: a batch is over. */
const CLOSES_BATCH = new Set(['S', 'Q', 'X', 'F'].map(ch));

export interface GuardHooks {
  /** `execProtocolRawStream` threw: the socket server's queue is stuck from now on. */
  onQueueFailure(error: unknown): void;
}

export interface GuardedDb {
  /** Give this to `PGLiteSocketServer`. */
  readonly db: PGlite;
  /** Call before stopping the server: failures while closing are expected, not reported. */
  stopping(): void;
}

type RawStreamOptions = Parameters<PGlite['execProtocolRawStream']>[1];

export function guardSocketDb(db: PGlite, hooks: GuardHooks): GuardedDb {
  let batchOpen = false;
  let stopping = false;

  const execProtocolRawStream = async (message: Uint8Array, options: RawStreamOptions): Promise<void> => {
    const refusal = refuse(message);
    if (refusal) {
      options?.onRawData(refusal);
      return;
    }
    try {
      await db.execProtocolRawStream(message, options);
    } catch (error) {
      if (!stopping) hooks.onQueueFailure(error);
      throw error;
    }
    const type = message[0] ?? 0;
    if (OPENS_BATCH.has(type)) batchOpen = true;
    else if (CLOSES_BATCH.has(type) || type === 0) batchOpen = false;
  };

  const overrides: Partial<Record<PropertyKey, unknown>> = {
    execProtocolRawStream,
    isInTransaction: () => db.isInTransaction() || batchOpen,
    // the queue runs ROLLBACK through exec() when a connection leaves mid-transaction;
    // a simple query also ends any open batch
    exec: async (...args: Parameters<PGlite['exec']>) => {
      try {
        return await db.exec(...args);
      } finally {
        batchOpen = false;
      }
    },
  };

  // PGlite keeps its state in private fields, so every other member is read from and
  // bound to the real instance, never to the proxy.
  const view = new Proxy(db, {
    get(target, property) {
      if (Object.prototype.hasOwnProperty.call(overrides, property)) return overrides[property];
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });

  return {
    db: view,
    stopping: () => {
      stopping = true;
    },
  };
}

/** The reply to a message that must not reach PGlite, or undefined to pass it on. */
function refuse(message: Uint8Array): Uint8Array | undefined {
  const type = message[0];
  // 0 starts an untyped startup packet (pglite-socket frames only protocol 3.0 ones)
  if (type === undefined || type === 0 || KNOWN_TYPES.has(type)) return undefined;
  return errorResponse('FATAL', '08P01', `invalid frontend message type ${type}`);
}

/** A protocol ErrorResponse ('E') with severity, SQLSTATE and message. */
export function errorResponse(severity: string, sqlState: string, text: string): Uint8Array {
  const field = (code: string, value: string) =>
    Buffer.concat([Buffer.from(code, 'latin1'), Buffer.from(value, 'utf8'), Buffer.from([0])]);
  const body = Buffer.concat([
    field('S', severity),
    field('V', severity),
    field('C', sqlState),
    field('M', text),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
