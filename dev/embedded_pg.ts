/**
 * The embedded PostgreSQL of the local stack: PGlite (PostgreSQL 18 compiled to WebAssembly, no
 * system install) keeping its data in `.stack/pglite/data`, served over the PostgreSQL wire
 * protocol by `@electric-sql/pglite-socket` on 127.0.0.1:55433. Plain TCP without TLS: it listens
 * on loopback only. Any user name, password and database name are accepted; every connection
 * reaches the one database as user `postgres`.
 *
 * PGlite is one single-user backend, so all connections share one session. A connection owns that
 * session from its first message until the server is idle again (ReadyForQuery "I"): during an
 * extended-protocol exchange (Parse ... Sync) and during a whole transaction. The others wait, so
 * a client must never wait on a second connection while it holds a transaction open; a session
 * held idle while others wait is ended after `--idle-session-timeout`, like PostgreSQL's
 * `idle_in_transaction_session_timeout`. Session settings (`SET`) are shared by all connections.
 *
 * `deno run -A dev/embedded_pg.ts [--port 55433] [--data-dir DIR]`; `deno task stack up` starts
 * it in the background (log: `.stack/pglite/server.log`). SIGTERM or SIGINT stops it cleanly.
 * @module
 */
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from "@electric-sql/pglite-socket";
import { Buffer } from "node:buffer";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { defineCommand, parseCommandLine } from "../lib/cli/cli.ts";
import { AppError, exitWith } from "../lib/errors.ts";

/** Port of the embedded PostgreSQL unless `--port` or `EMBEDDED_POSTGRES_PORT` says otherwise. */
export const EMBEDDED_POSTGRES_PORT = 55433;

/** The URI clients use: loopback, no TLS, PGlite's one user and database. */
export function embeddedPostgresUri(port: number = EMBEDDED_POSTGRES_PORT): string {
  return `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`;
}

/** Defaults of {@linkcode EmbeddedPostgresOptions}; the script's flags show the same values. */
export const EMBEDDED_PG_DEFAULTS = { maxConnections: 32, idleSessionTimeoutMs: 30_000 } as const;

/** Options of {@linkcode startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** Folder of the database files; `memory://` keeps them in memory. @default {".stack/pglite/data"} */
  dataDir?: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. @default {55433} */
  port?: number;
  /** Connections open at once; more are refused with SQLSTATE 53300. @default {32} */
  maxConnections?: number;
  /**
   * Milliseconds a connection may hold the session (open transaction) without sending anything
   * while other connections wait; then it is closed and its transaction rolled back. @default {30000}
   */
  idleSessionTimeoutMs?: number;
  /** Where log lines go. @default {console.log with a timestamp} */
  log?: (line: string) => void;
}

/** A running embedded server. */
export interface EmbeddedPostgres {
  /** The port it listens on (useful with `port: 0`). */
  port: number;
  /** Its URI (see {@linkcode embeddedPostgresUri}). */
  uri: string;
  /** Closes every connection (rolling back open transactions), then the database. */
  stop(): Promise<void>;
}

interface QueuedMessage {
  handlerId: number;
  message: Uint8Array;
  onData: (data: Uint8Array) => void;
  resolve: (bytes: number) => void;
  reject: (error: Error) => void;
}

const STARTUP_PROTOCOL = 196608; // 3.0
/** Messages whose answer ends with ReadyForQuery: Query, Sync, FunctionCall, CopyDone, CopyFail. */
const ENDS_WITH_READY = new Set(["Q", "S", "F", "c", "f"].map((c) => c.charCodeAt(0)));
const TERMINATE = "X".charCodeAt(0);
const READY_FOR_QUERY = "Z".charCodeAt(0);
const IDLE = "I".charCodeAt(0);
const SYNC = new Uint8Array([0x53, 0, 0, 0, 4]);
const QUERY = "Q".charCodeAt(0);
const PARSE = "P".charCodeAt(0);
/** `COPY ... FROM STDIN` stalls PGlite for good: it cannot wait for the CopyData that follows. */
const COPY_FROM_STDIN = /\bcopy\b[\s\S]*\bfrom\s+stdin\b/i;
const COPY_REFUSAL = "DO $refuse$BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', " +
  "MESSAGE = 'COPY FROM STDIN is not supported by the embedded PostgreSQL (PGlite)', " +
  "HINT = 'insert rows with INSERT ... SELECT FROM unnest($1::text[], ...) instead'; END$refuse$";

function isStartup(message: Uint8Array): boolean {
  if (message.length < 8) return false;
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  return view.getInt32(0) === message.length && view.getInt32(4) === STARTUP_PROTOCOL;
}

/** A simple-protocol Query message. */
function queryMessage(sql: string): Uint8Array {
  const text = new TextEncoder().encode(sql);
  const out = new Uint8Array(text.length + 6);
  out[0] = 0x51;
  new DataView(out.buffer).setInt32(1, text.length + 5);
  out.set(text, 5);
  return out;
}

/**
 * The message to run instead of `message`: a Query or Parse of `COPY ... FROM STDIN` becomes a
 * statement raising feature_not_supported, so the client gets an error instead of a stalled server.
 */
export function guardMessage(message: Uint8Array): Uint8Array {
  const type = message[0];
  if (type !== QUERY && type !== PARSE) return message;
  const decoder = new TextDecoder();
  if (type === QUERY) {
    const sql = decoder.decode(message.subarray(5, message.length - 1));
    return COPY_FROM_STDIN.test(sql) ? queryMessage(COPY_REFUSAL) : message;
  }
  // Parse: name\0 query\0 int16 count, int32 types[count]
  const nameEnd = message.indexOf(0, 5);
  const queryEnd = message.indexOf(0, nameEnd + 1);
  if (nameEnd < 0 || queryEnd < 0) return message;
  if (!COPY_FROM_STDIN.test(decoder.decode(message.subarray(nameEnd + 1, queryEnd)))) {
    return message;
  }
  const name = message.subarray(5, nameEnd + 1);
  const text = new TextEncoder().encode(`${COPY_REFUSAL}\0`);
  const rest = message.subarray(queryEnd + 1);
  const out = new Uint8Array(5 + name.length + text.length + rest.length);
  out[0] = PARSE;
  new DataView(out.buffer).setInt32(1, out.length - 1);
  out.set(name, 5);
  out.set(text, 5 + name.length);
  out.set(rest, 5 + name.length + text.length);
  return out;
}

/** A FATAL ErrorResponse with a SQLSTATE, as PostgreSQL sends before closing a connection. */
export function fatalMessage(code: string, message: string): Uint8Array {
  const fields = ["SFATAL", "VFATAL", `C${code}`, `M${message}`].map((f) => `${f}\0`).join("");
  const body = new TextEncoder().encode(`${fields}\0`);
  const out = new Uint8Array(body.length + 5);
  out[0] = 0x45;
  new DataView(out.buffer).setInt32(1, body.length + 4);
  out.set(body, 5);
  return out;
}

/**
 * Runs the protocol messages of all connections on the one PGlite session. Unlike
 * pglite-socket's own queue, which lets another connection in between the messages of an
 * extended-protocol exchange outside BEGIN (so a Bind can reach another client's statement), a
 * connection keeps the session until PGlite reports it idle.
 */
export class SessionQueue {
  #pending: QueuedMessage[] = [];
  #owner: number | null = null;
  /** The owner sent messages since the last ReadyForQuery (an exchange is open). */
  #exchangeOpen = false;
  #running = false;
  #closed = new Set<number>();
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #drained: (() => void)[] = [];

  constructor(
    private readonly db: PGlite,
    private readonly idleSessionTimeoutMs: number,
    private readonly onIdleOwner: (handlerId: number) => void,
    private readonly onFatal: (error: unknown) => void = () => {},
  ) {}

  /** Queues one message of a connection; resolves with the bytes answered once it ran. */
  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void) {
    return new Promise<number>((resolve, reject) => {
      if (this.#closed.has(handlerId)) return reject(new Error("connection closed"));
      if (message[0] === TERMINATE && message.length === 5) return resolve(0); // close follows
      this.#pending.push({ handlerId, message, onData, resolve, reject });
      if (handlerId === this.#owner) this.#clearIdleTimer();
      void this.#pump();
    });
  }

  /** Drops the queued messages of a closed connection. */
  clearQueueForHandler(handlerId: number): void {
    this.#closed.add(handlerId);
    this.#pending = this.#pending.filter((m) => {
      if (m.handlerId !== handlerId) return true;
      m.reject(new Error("connection closed"));
      return false;
    });
  }

  /** Ends what a closed connection left open (exchange, transaction) and frees the session. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    this.#closed.add(handlerId);
    if (this.#owner !== handlerId) {
      this.#closed.delete(handlerId);
      return;
    }
    await new Promise<void>((resolve) => {
      this.#drained.push(resolve);
      void this.#pump();
    });
    this.#closed.delete(handlerId);
  }

  /** Messages waiting for the session. */
  get length(): number {
    return this.#pending.length;
  }

  async #run(message: Uint8Array, onData: (data: Uint8Array) => void): Promise<Uint8Array> {
    const tail = new Uint8Array(6);
    let bytes = 0;
    await this.db.runExclusive(() =>
      this.db.execProtocolRawStream(message, {
        onRawData: (data: Uint8Array) => {
          bytes += data.length;
          if (data.length >= 6) tail.set(data.subarray(data.length - 6));
          else {
            tail.copyWithin(0, data.length);
            tail.set(data, 6 - data.length);
          }
          onData(data);
        },
      })
    );
    return bytes >= 6 ? tail : new Uint8Array(6);
  }

  /** Rolls back what a closed owner left open. */
  async #release(): Promise<void> {
    try {
      if (this.#exchangeOpen) await this.#run(SYNC, () => {});
      if (this.db.isInTransaction()) await this.#run(queryMessage("ROLLBACK"), () => {});
    } finally {
      this.#closed.delete(this.#owner!);
      this.#owner = null;
      this.#exchangeOpen = false;
    }
  }

  async #pump(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      for (;;) {
        if (this.#owner !== null && this.#closed.has(this.#owner)) await this.#release();
        const index = this.#owner === null
          ? (this.#pending.length ? 0 : -1)
          : this.#pending.findIndex((m) => m.handlerId === this.#owner);
        if (index < 0) break;
        const item = this.#pending.splice(index, 1)[0]!;
        this.#owner = item.handlerId;
        let bytes = 0;
        try {
          const tail = await this.#run(guardMessage(item.message), (data) => {
            bytes += data.length;
            item.onData(data);
          });
          const ready = (ENDS_WITH_READY.has(item.message[0]!) || isStartup(item.message)) &&
            tail[0] === READY_FOR_QUERY && tail[4] === 5;
          this.#exchangeOpen = !ready;
          if (ready && tail[5] === IDLE) this.#owner = null;
          item.resolve(bytes);
        } catch (error) {
          this.#exchangeOpen = true; // PGlite failed mid-message: reset the session when it closes
          item.reject(error as Error);
          if ((error as { name?: string }).name === "ExitStatus") this.onFatal(error);
        }
      }
    } finally {
      this.#running = false;
      for (const done of this.#drained.splice(0)) done();
    }
    if (this.#owner !== null && this.#pending.length > 0) this.#armIdleTimer(this.#owner);
  }

  #armIdleTimer(owner: number) {
    if (this.#idleTimer !== undefined || this.idleSessionTimeoutMs <= 0) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      const stillIdle = this.#owner === owner && !this.#running &&
        !this.#pending.some((m) => m.handlerId === owner);
      if (stillIdle && this.#pending.length > 0) this.onIdleOwner(owner);
    }, this.idleSessionTimeoutMs);
  }

  #clearIdleTimer() {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /** Stops the idle timer (at shutdown). */
  dispose(): void {
    this.#clearIdleTimer();
  }
}

function timestamped(line: string): void {
  console.log(`${new Date().toISOString()} ${line}`);
}

/**
 * Opens (creating on first use) the PGlite database and serves it on 127.0.0.1. Resolves once it
 * accepts connections.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const log = options.log ?? timestamped;
  const dataDir = options.dataDir ??
    join(new URL("..", import.meta.url).pathname, ".stack/pglite/data");
  const maxConnections = options.maxConnections ?? EMBEDDED_PG_DEFAULTS.maxConnections;
  const fresh = !dataDir.startsWith("memory://") && !existsSync(join(dataDir, "PG_VERSION"));
  if (!dataDir.startsWith("memory://")) Deno.mkdirSync(dataDir, { recursive: true });
  const started = performance.now();
  const db = await PGlite.create({ dataDir });
  log(
    `${fresh || dataDir.startsWith("memory://") ? "created" : "opened"} database in ${dataDir} (${
      Math.round(performance.now() - started)
    } ms)`,
  );

  const handlers = new Map<number, { handler: PGLiteSocketHandler; socket: Socket }>();
  const idleMs = options.idleSessionTimeoutMs ?? EMBEDDED_PG_DEFAULTS.idleSessionTimeoutMs;
  const queue = new SessionQueue(db, idleMs, (id) => {
    const entry = handlers.get(id);
    if (!entry) return;
    log(`connection #${id} held a transaction idle while others waited: closing it, rolling back`);
    entry.socket.write(
      fatalMessage("25P03", "terminating connection due to idle-in-transaction timeout"),
    );
    void entry.handler.detach(true).finally(() => handlers.delete(id));
  }, (error) => {
    log(`PGlite stopped working (${String(error)}): exiting`);
    Deno.exit(1);
  });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    if (handlers.size >= maxConnections) {
      log(`refused a connection: ${maxConnections} open (--max-connections)`);
      socket.end(Buffer.from(fatalMessage("53300", "sorry, too many clients already")));
      return;
    }
    const handler = new PGLiteSocketHandler({
      queryQueue: queue as unknown as PGLiteSocketHandlerOptions["queryQueue"],
      closeOnDetach: true,
    });
    const id = handler.handlerId;
    handlers.set(id, { handler, socket });
    const forget = () => handlers.delete(id);
    handler.addEventListener("close", forget);
    handler.addEventListener("error", forget);
    handler.attach(socket).catch((error) => {
      log(`connection #${id} failed: ${(error as Error).message}`);
      forget();
      socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? EMBEDDED_POSTGRES_PORT, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  }).catch(async (error) => {
    await db.close();
    const busy = (error as { code?: string }).code === "EADDRINUSE";
    throw new AppError(
      "DB_UNREACHABLE",
      busy
        ? `port 127.0.0.1:${
          options.port ?? EMBEDDED_POSTGRES_PORT
        } is in use; pick another with --port`
        : `cannot listen on 127.0.0.1: ${(error as Error).message}`,
      { cause: error },
    );
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  server.on("error", (error) => log(`server error: ${error.message}`));
  log(`listening on 127.0.0.1:${port} (no TLS, loopback only), max ${maxConnections} connections`);

  let stopping: Promise<void> | undefined;
  return {
    port,
    uri: embeddedPostgresUri(port),
    stop: () =>
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const { handler } of [...handlers.values()]) await handler.detach(true);
        handlers.clear();
        for (const socket of sockets) socket.destroy();
        await closed;
        queue.dispose();
        await db.close();
        log("stopped; database closed cleanly");
      })(),
  };
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** `dev/embedded_pg.ts`. */
export const EMBEDDED_PG_SPEC = defineCommand({
  name: "embedded_pg",
  summary: "serve an embedded PostgreSQL (PGlite) on 127.0.0.1 without TLS until SIGTERM",
  flags: {
    "port": {
      type: "integer",
      description: "TCP port on 127.0.0.1 (0 picks a free one)",
      env: "EMBEDDED_POSTGRES_PORT",
      default: EMBEDDED_POSTGRES_PORT,
      min: 0,
      max: 65535,
    },
    "data-dir": {
      type: "string",
      description: "folder of the database files (memory:// for none)",
      defaultLabel: ".stack/pglite/data",
    },
    "max-connections": {
      type: "integer",
      description: "connections open at once",
      default: EMBEDDED_PG_DEFAULTS.maxConnections,
      min: 1,
      max: 1000,
    },
    "idle-session-timeout": {
      type: "number",
      description: "seconds a transaction may sit idle while others wait (0: no limit)",
      default: EMBEDDED_PG_DEFAULTS.idleSessionTimeoutMs / 1000,
      min: 0,
      max: 86_400,
    },
  },
  examples: ["deno run -A dev/embedded_pg.ts --port 55433"],
});

/** Serves the embedded database until SIGINT or SIGTERM; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const values = parseCommandLine(EMBEDDED_PG_SPEC, args);
  if (!values) return 0;
  const server = await startEmbeddedPostgres({
    dataDir: values["data-dir"],
    port: values.port,
    maxConnections: values["max-connections"],
    idleSessionTimeoutMs: values["idle-session-timeout"] * 1000,
  });
  timestamped(`uri: ${server.uri}`);
  let signals = 0;
  await new Promise<void>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => {
        if (++signals > 1) Deno.exit(130); // a second signal: no clean shutdown
        resolve();
      });
    }
  });
  timestamped("stopping (signal): rolling back open transactions, closing the database");
  const deadline = new Promise<"late">((resolve) => setTimeout(() => resolve("late"), 20_000));
  if (await Promise.race([server.stop(), deadline]) === "late") {
    timestamped("the database did not close within 20 s: exiting anyway");
    return 1;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
