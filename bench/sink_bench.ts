/**
 * Sink throughput into PostgreSQL: our `writeBatch` (batches of 5,000 parsed tickets) against one
 * autocommitted INSERT per row (the original Python project's way) and `psql \copy` from CSV (the
 * database's practical limit). All three write the same rows: per ticket its ticket row, one row
 * per seat and one payment transaction, into a fresh set of tables dropped afterwards.
 * @module
 */
import { setupDatabase } from "../lib/postgres/setup.ts";
import type { PoolClient } from "../lib/postgres/postgres.ts";
import {
  PAYMENT_WRITE_COLUMNS,
  qualify,
  SEAT_WRITE_COLUMNS,
  TICKET_WRITE_COLUMNS,
} from "../lib/postgres/schema.ts";
import { uuidv7s } from "../lib/model/uuid.ts";
import { CONSUMER_DEFAULTS } from "../lib/pipeline/consumer.ts";
import { PRODUCER_DEFAULTS } from "../lib/pipeline/producer.ts";
import {
  type Batch,
  COPY_PIECE_TICKETS,
  type IncomingRow,
  type SinkStatements,
  sinkStatements,
  writeBatch,
} from "../lib/pipeline/sink.ts";
import { columnTexter, showId, TICKET_COLUMN_NAMES, ticketTexts } from "../lib/model/columns.ts";
import { encodeTicket, parseTicket } from "../lib/model/ticket.ts";
import {
  benchName,
  checkpoint,
  CleanupScope,
  openDatabase,
  perSecond,
  progress,
  ratio,
  releaseAccess,
  sampleTickets,
  type StackAccess,
  stackAccess,
  timed,
} from "./common.ts";
import { backendsNamed, CpuWatcher } from "./cpu.ts";
import { copyFiles, timedCopies } from "./psql_copy.ts";
import { startTcpProxy } from "../testing/tcp_proxy.ts";

/** Tickets per `writeBatch` call, as the consumer's default batch size. */
export const SINK_BATCH_SIZE = CONSUMER_DEFAULTS.batchSize;
/** Partitions written in parallel in the consumer-shaped variant (the topic default). */
const PARALLEL_PARTITIONS = PRODUCER_DEFAULTS.partitions;
/**
 * Times `\copy` and writeBatch on one connection each run, alternating: the figures compared are
 * each one's fastest, as noise on a shared machine only ever slows a run down.
 */
const SINK_ROUNDS = 2;

/** The fastest of some runs of one path. */
const fastest = <F extends RowsFigure>(runs: F[]): F =>
  runs.reduce((best, run) => run.ticketsPerSecond > best.ticketsPerSecond ? run : best);

/**
 * Round trip to PostgreSQL, in milliseconds, of the figures across a network (a proxy holding
 * each direction for half of it): a managed database in a nearby region. Loopback has ~0.05 ms.
 */
export const REMOTE_ROUND_TRIP_MS = 5;
/** Tries of one batch that lost a seat race or a deadlock to another partition's batch. */
const MAX_ATTEMPTS = 10;

/** Sizes of the sink benchmark. */
export interface SinkSizes {
  /** Rows for writeBatch and for \copy. */
  rows: number;
  /** Rows for the one-INSERT-per-row baseline. */
  rowAtATimeRows: number;
}

/**
 * One write path's measured throughput. `tickets`: tickets handled (stored or refused); `rows`:
 * rows it wrote, counted in the tables afterwards (tickets + seats + transactions).
 */
export interface RowsFigure {
  tickets: number;
  rows: number;
  seconds: number;
  ticketsPerSecond: number;
  rowsPerSecond: number;
  /** CPU seconds of the PostgreSQL backend doing the writes (/proc; undefined if unreadable). */
  serverCpuSeconds?: number;
  /** {@linkcode contentDigest} of what it stored, where the bench compares two paths' rows. */
  digest?: string;
}

/** writeBatch's figure: also what it stored, refused (SEAT_TAKEN) and retried. */
export type WriteBatchFigure = RowsFigure & WriteCounts;

/** Results of {@linkcode benchSink}. */
export interface SinkResults {
  batchSize: number;
  /**
   * writeBatch, batches in sequence on one connection: the figure compared with the baselines;
   * the fastest of {@linkcode SINK_ROUNDS} runs alternated with `\copy`'s.
   */
  ours: WriteBatchFigure;
  /** writeBatch, 3 partitions written in parallel on a pool of 4, as the consumer does. */
  oursParallel: WriteBatchFigure & { partitions: number };
  rowAtATime: RowsFigure;
  /**
   * `psql \copy` time as psql's `\timing` reports it; `wallSeconds` adds start and connection.
   * The fastest of its runs, as `ours`.
   */
  copy: RowsFigure & { wallSeconds: number };
  /** Tickets/s of each run of `ours` and `copy`, in the order run (alternating, `copy` first). */
  rounds: { ours: number[]; copy: number[] };
  /**
   * writeBatch on one connection and `psql \copy`, both through a proxy adding
   * {@linkcode REMOTE_ROUND_TRIP_MS} to every round trip; `vsCopy` ours ÷ theirs.
   */
  remote: {
    roundTripMs: number;
    ours: WriteBatchFigure;
    copy: RowsFigure & { wallSeconds: number };
    vsCopy: number | null;
  };
  /**
   * Every run of writeBatch on one connection and of `\copy`, here and through the proxy, stored
   * the same rows (their {@linkcode contentDigest}s are equal); the bench fails otherwise.
   */
  sameRows: boolean;
  /** ours ÷ theirs, in rows/s (every path writes the same rows per ticket). */
  ratios: { vsRowAtATime: number | null; vsCopy: number | null; parallelVsCopy: number | null };
}

/** Runs the write paths on the same generated rows. */
export async function benchSink(suffix: string, sizes: SinkSizes): Promise<SinkResults> {
  const access = await stackAccess("SSL");
  try {
    const rows = parsedRows(sizes.rows);
    // each path's tables are dropped before the next path starts, so that each writes into a
    // database holding the same (none of the others' pages in its buffers); \copy first, then
    // the figure compared with it
    const copies: SinkResults["copy"][] = [], oursRuns: WriteBatchFigure[] = [];
    for (let round = 0; round < SINK_ROUNDS; round++) {
      const name = `${suffix}_${round}`;
      copies.push(await inOwnScope(access, (scope) => psqlCopy(access, scope, name, rows)));
      oursRuns.push(await inOwnScope(access, (scope) => oursSequential(access, scope, name, rows)));
    }
    const copy = fastest(copies), ours = fastest(oursRuns);
    const oursParallel = await inOwnScope(
      access,
      (scope) => oursInParallel(access, scope, suffix, rows),
    );
    const rowAtATime = await inOwnScope(
      access,
      (scope) => insertRowAtATime(access, scope, suffix, rows.slice(0, sizes.rowAtATimeRows)),
    );
    const remote = await acrossNetwork(access, suffix, rows);
    const digests = new Set(
      [...copies, ...oursRuns, remote.copy, remote.ours].map((f) => f.digest),
    );
    if (digests.size !== 1) {
      throw new Error(`writeBatch and \\copy stored different rows (${digests.size} digests)`);
    }
    return {
      batchSize: SINK_BATCH_SIZE,
      ours,
      oursParallel,
      rowAtATime,
      copy,
      remote,
      sameRows: true,
      rounds: {
        ours: oursRuns.map((f) => f.ticketsPerSecond),
        copy: copies.map((f) => f.ticketsPerSecond),
      },
      ratios: {
        vsRowAtATime: ratio(ours.rowsPerSecond, rowAtATime.rowsPerSecond),
        vsCopy: ratio(ours.rowsPerSecond, copy.rowsPerSecond),
        parallelVsCopy: ratio(oursParallel.rowsPerSecond, copy.rowsPerSecond),
      },
    };
  } finally {
    await releaseAccess(access);
  }
}

/**
 * `\copy` and writeBatch on one connection again, through a proxy that adds
 * {@linkcode REMOTE_ROUND_TRIP_MS} to each round trip: what the protocol's waits cost where the
 * database is not on the same machine (each waits for the server only between its statements).
 */
async function acrossNetwork(
  access: StackAccess,
  suffix: string,
  rows: IncomingRow[],
): Promise<SinkResults["remote"]> {
  const target = new URL(access.connection.postgresUri);
  const proxy = await startTcpProxy(
    target.hostname,
    Number(target.port || 5432),
    REMOTE_ROUND_TRIP_MS / 2,
  );
  try {
    target.port = String(proxy.port);
    const far = { ...access, connection: { ...access.connection, postgresUri: target.toString() } };
    progress(`sink: the same through a proxy adding ${REMOTE_ROUND_TRIP_MS} ms a round trip`);
    const copy = await inOwnScope(access, (scope) => psqlCopy(far, scope, `${suffix}_far`, rows));
    const ours = await inOwnScope(
      access,
      (scope) => oursSequential(far, scope, `${suffix}_far`, rows),
    );
    return {
      roundTripMs: REMOTE_ROUND_TRIP_MS,
      ours,
      copy,
      vsCopy: ratio(ours.rowsPerSecond, copy.rowsPerSecond),
    };
  } finally {
    await proxy.close();
  }
}

/**
 * Runs one path with a cleanup scope of its own, closed (its tables dropped) when it ends, after
 * a checkpoint: without one, the path after another wrote ~300 MB of WAL ran ~10% slower.
 */
async function inOwnScope<T>(
  access: StackAccess,
  path: (scope: CleanupScope) => Promise<T>,
): Promise<T> {
  await checkpoint(access);
  const scope = new CleanupScope();
  try {
    return await path(scope);
  } finally {
    await scope.close();
  }
}

/** Generated tickets, encoded and parsed back as the consumer does (outside the timing). */
function parsedRows(count: number): IncomingRow[] {
  const publishedAt = new Date();
  return sampleTickets(count, 42).map((ticket, i) => {
    const value = encodeTicket(ticket);
    const parsed = parseTicket(value);
    if (!parsed.ok) throw new Error(`generated ticket does not parse: ${parsed.detail}`);
    return { ticket: parsed.ticket, offset: String(i), value, publishedAt };
  });
}

/** Makes a fresh ticket table (and the shared pipeline tables); drops it at scope close. */
async function freshTable(
  access: StackAccess,
  scope: CleanupScope,
  table: string,
  groupIds: string[] = [],
): Promise<void> {
  scope.table(access, table, groupIds);
  await setupDatabase(access.connection, { schema: "public", table });
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Stored and refused (e.g. SEAT_TAKEN) tickets of a write, and batches retried. */
interface WriteCounts {
  stored: number;
  refused: number;
  retries: number;
}

/** Writes a batch, retrying as the consumer does when two partitions' batches deadlock on seats. */
async function writeWithRetry(client: PoolClient, sql: SinkStatements, batch: Batch) {
  for (let attempt = 1;; attempt++) {
    try {
      return { result: await writeBatch(client, sql, batch), retries: attempt - 1 };
    } catch (error) {
      const raced = (error as { code?: string }).code === "40P01"; // deadlock between partitions' seats
      if (!raced || attempt >= MAX_ATTEMPTS) throw error;
    }
  }
}

/** Writes rows as one partition's batches, in order, each in its own transaction. */
async function writePartition(
  client: PoolClient,
  table: string,
  partition: number,
  rows: IncomingRow[],
): Promise<WriteCounts> {
  const sql = sinkStatements(qualify({ schema: "public", table }));
  const counts: WriteCounts = { stored: 0, refused: 0, retries: 0 };
  let expected = 0n;
  for (const chunk of chunks(rows, SINK_BATCH_SIZE)) {
    const next = expected + BigInt(chunk.length);
    const { result, retries } = await writeWithRetry(client, sql, {
      groupId: table,
      table,
      topic: table,
      partition,
      expectedOffset: expected,
      nextOffset: next,
      rows: chunk,
      deadLetters: [],
    });
    // Every ticket is either stored or refused as a dead letter (a seat sold twice).
    if (!result.committed || result.stored + result.deadLetters !== chunk.length) {
      throw new Error(
        `writeBatch stored ${result.stored} and refused ${result.deadLetters} of ${chunk.length}`,
      );
    }
    counts.stored += result.stored;
    counts.refused += result.deadLetters;
    counts.retries += retries;
    expected = next;
  }
  return counts;
}

async function oursSequential(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  rows: IncomingRow[],
): Promise<WriteBatchFigure> {
  const table = benchName("sink", suffix);
  await freshTable(access, scope, table, [table]);
  progress(`sink: writeBatch, ${rows.length} rows in batches of ${SINK_BATCH_SIZE}, 1 connection`);
  const db = await openDatabase(access, 4);
  try {
    const client = await db.pool.connect();
    try {
      const backend = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid"))
        .rows[0]!.pid;
      const cpu = new CpuWatcher({ server: () => [backend] });
      const { seconds, value } = await timed(() => writePartition(client, table, 0, rows));
      const serverCpuSeconds = (await cpu.stop()).seconds.server;
      const written = await tableRows(access, table);
      return {
        ...report("writeBatch", rows.length, written, seconds),
        serverCpuSeconds,
        ...value,
        digest: await contentDigest(access, table),
      };
    } finally {
      client.release();
    }
  } finally {
    await db.pool.end();
  }
}

async function oursInParallel(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  rows: IncomingRow[],
): Promise<WriteBatchFigure & { partitions: number }> {
  const table = benchName("sink_parallel", suffix);
  await freshTable(access, scope, table, [table]);
  progress(`sink: writeBatch, ${rows.length} rows, ${PARALLEL_PARTITIONS} partitions in parallel`);
  const perPartition = Math.ceil(rows.length / PARALLEL_PARTITIONS);
  const parts = chunks(rows, perPartition);
  const watchDb = await openDatabase(access, 1);
  scope.add("close the watcher's pool", () => watchDb.pool.end());
  const db = await openDatabase(access, 4, table);
  try {
    const cpu = new CpuWatcher({ server: backendsNamed(watchDb, table) });
    const { seconds, value } = await timed(() =>
      Promise.all(parts.map(async (part, partition) => {
        const client = await db.pool.connect();
        try {
          return await writePartition(client, table, partition, part);
        } finally {
          client.release();
        }
      }))
    );
    const serverCpuSeconds = (await cpu.stop()).seconds.server;
    const counts = value.reduce((a, b) => ({
      stored: a.stored + b.stored,
      refused: a.refused + b.refused,
      retries: a.retries + b.retries,
    }));
    return {
      ...report("writeBatch parallel", rows.length, await tableRows(access, table), seconds),
      serverCpuSeconds,
      ...counts,
      partitions: parts.length,
    };
  } finally {
    await db.pool.end();
  }
}

const amountText = columnTexter("price_amount"), currencyText = columnTexter("price_currency");
const purchasedText = columnTexter("purchased_at");

/**
 * `count` payment ids in the order the sink makes them: version 7, a clock reading per piece of
 * {@linkcode COPY_PIECE_TICKETS} tickets (here one millisecond later each), random within a
 * piece. Ids made with one reading would land in the payments' primary key in random order, which
 * the sink's do not.
 */
function sinkPaymentIds(count: number): string[] {
  const ids: string[] = [], start = Date.now();
  for (let at = 0; at < count; at += COPY_PIECE_TICKETS) {
    ids.push(...uuidv7s(Math.min(COPY_PIECE_TICKETS, count - at), start + at / COPY_PIECE_TICKETS));
  }
  return ids;
}

/**
 * A ticket's rows in the three tables, each in its `*_WRITE_COLUMNS` order, with the texts the
 * sink writes (the column spec's) and a payment id of the sink's kind (`sinkPaymentIds`): the same
 * rows.
 */
function ticketRows(row: IncomingRow, topic: string, paymentId: string) {
  const t = row.ticket;
  return {
    ticket: [...ticketTexts(t), topic, 0, row.offset, row.publishedAt?.toISOString() ?? null],
    seats: t.seats.map((seat) => [showId(t), seat, t.ticket_id]),
    transaction: [t.ticket_id, amountText(t), currencyText(t), purchasedText(t), paymentId],
  };
}

/** Rows in a ticket table and its seats and transactions tables. */
export async function tableRows(access: StackAccess, table: string): Promise<number> {
  const q = qualify({ schema: "public", table });
  const db = await openDatabase(access, 1);
  try {
    const { rows } = await db.pool.query<{ n: string }>(
      `SELECT (SELECT count(*) FROM ${q.tickets}) + (SELECT count(*) FROM ${q.seats})
        + (SELECT count(*) FROM ${q.transactions}) AS n`,
    );
    return Number(rows[0]!.n);
  } finally {
    await db.pool.end();
  }
}

/**
 * A digest of what a ticket table and its seats and payments hold, without what differs between
 * two loads of the same tickets by design (topic, payment ids, insert times): equal digests, the
 * same rows. Lets the bench check that the paths it compares wrote the same data.
 */
async function contentDigest(access: StackAccess, table: string): Promise<string> {
  const q = qualify({ schema: "public", table });
  const ticketColumns = [
    ...TICKET_COLUMN_NAMES,
    ...["kafka_partition", "kafka_offset", "published_at", "status", "cancel_offset"],
  ];
  const paymentColumns = [
    ...PAYMENT_WRITE_COLUMNS.filter((c) => c !== "transaction_id"),
    ...["status", "refunded_at"],
  ];
  const digest = (columns: readonly string[], from: string, order: string) =>
    `(SELECT md5(coalesce(string_agg(r::text, E'\\n' ORDER BY ${order}), ''))
      FROM (SELECT ${columns.join(", ")} FROM ${from}) r)`;
  const db = await openDatabase(access, 1);
  try {
    const { rows } = await db.pool.query<{ d: string }>(
      `SELECT ${digest(ticketColumns, q.tickets, "r.ticket_id")} || ${
        digest(SEAT_WRITE_COLUMNS, q.seats, "r.show_id, r.seat")
      } || ${digest(paymentColumns, q.transactions, "r.ticket_id")} AS d`,
    );
    return rows[0]!.d;
  } finally {
    await db.pool.end();
  }
}

/** `INSERT INTO table (columns) VALUES ($1, ...)` */
function insertStatement(table: string, columns: readonly string[]): string {
  return `INSERT INTO ${table} (${columns.join(", ")}) VALUES (${
    columns.map((_, i) => `$${i + 1}`).join(", ")
  })`;
}

async function insertRowAtATime(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  rows: IncomingRow[],
): Promise<RowsFigure> {
  const table = benchName("sink_rows", suffix);
  await freshTable(access, scope, table);
  progress(
    `sink: one autocommitted INSERT per row (ticket, seats, transaction), ${rows.length} tickets`,
  );
  const q = qualify({ schema: "public", table });
  const insertTicket = insertStatement(q.tickets, TICKET_WRITE_COLUMNS);
  const insertSeat = insertStatement(q.seats, SEAT_WRITE_COLUMNS);
  const insertTransaction = insertStatement(q.transactions, PAYMENT_WRITE_COLUMNS);
  const paymentIds = sinkPaymentIds(rows.length);
  const db = await openDatabase(access, 1);
  try {
    const { seconds } = await timed(async () => {
      for (const [i, row] of rows.entries()) {
        const r = ticketRows(row, table, paymentIds[i]!);
        await db.pool.query(insertTicket, r.ticket);
        for (const seat of r.seats) await db.pool.query(insertSeat, seat);
        await db.pool.query(insertTransaction, r.transaction);
      }
    });
    return report("row-at-a-time", rows.length, await tableRows(access, table), seconds);
  } finally {
    await db.pool.end();
  }
}

function csvField(value: string | number | null): string {
  if (value === null) return "";
  return typeof value === "number" ? String(value) : `"${value.replaceAll('"', '""')}"`;
}

const csvLine = (values: (string | number | null)[]) => values.map(csvField).join(",");

async function psqlCopy(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  rows: IncomingRow[],
): Promise<RowsFigure & { wallSeconds: number }> {
  const table = benchName("sink_copy", suffix);
  await freshTable(access, scope, table);
  const dir = await Deno.makeTempDir({ prefix: "tickets-bench-" });
  scope.add("remove the CSV files", () => Deno.remove(dir, { recursive: true }));
  const paymentIds = sinkPaymentIds(rows.length);
  const all = rows.map((row, i) => ticketRows(row, table, paymentIds[i]!));
  const files = copyFiles(table, dir);
  const lines = [
    all.map((r) => csvLine(r.ticket)),
    all.flatMap((r) => r.seats.map(csvLine)),
    all.map((r) => csvLine(r.transaction)),
  ];
  for (const [i, f] of files.entries()) {
    await Deno.writeTextFile(f.csv, lines[i]!.join("\n") + "\n");
  }
  progress(`sink: psql \\copy, ${rows.length} tickets into the three tables`);
  const timing = await timedCopies(access, table, files);
  return {
    ...report("psql \\copy", rows.length, await tableRows(access, table), timing.seconds),
    serverCpuSeconds: timing.serverCpuSeconds,
    wallSeconds: timing.wallSeconds,
    digest: await contentDigest(access, table),
  };
}

function report(what: string, tickets: number, rows: number, seconds: number): RowsFigure {
  const figure = {
    tickets,
    rows,
    seconds,
    ticketsPerSecond: perSecond(tickets, seconds),
    rowsPerSecond: perSecond(rows, seconds),
  };
  progress(
    `sink: ${what} ${Math.round(figure.ticketsPerSecond)} tickets/s, ${
      Math.round(figure.rowsPerSecond)
    } rows/s`,
  );
  return figure;
}
