/**
 * Scaling out: 1, 2, 3 consumer processes in one group on one 6-partition topic, each drain into
 * a fresh table and checked exact; and how long a replacement takes to store its first row after
 * a member is killed (SIGKILL) or stopped (SIGTERM).
 * @module
 */
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { quoteIdent } from "../lib/postgres/schema.ts";
import { setupDatabase } from "../lib/postgres/setup.ts";
import {
  benchName,
  checkpoint,
  CleanupScope,
  countRows,
  openDatabase,
  perSecond,
  progress,
  releaseAccess,
  type StackAccess,
  stackAccess,
  storedSpan,
} from "./common.ts";
import { ConsumerProcess } from "./consumer_process.ts";
import { describeDrainCpu, type DrainCpu, watchDrain } from "./cpu.ts";
import { parseConsumerSummary } from "./parse.ts";
import { tableRows } from "./sink_bench.ts";

/** Seconds without a new message after which each consumer exits (the topic drained). */
const IDLE_TIMEOUT_SECONDS = 3;
/** Longest wait for rows to appear or grow. */
const WAIT_SECONDS = 120;

/** Sizes of the scale-out section. */
export interface ScaleSizes {
  tickets: number;
  partitions: number;
  /** Group sizes to drain with, in order. */
  members: number[];
  restartTickets: number;
  /** `--batch-size` of the restart figures' consumers (smoke: small, so they are caught mid-run). */
  restartBatchSize?: number;
}

/** One drain by a group of `members` consumer processes. */
export interface ScaleRun {
  members: number;
  /** Tickets stored or refused (SEAT_TAKEN), of N. */
  tickets: number;
  /** First row to last row (`stored_at` of the ticket table). */
  seconds: number;
  ticketsPerSecond: number;
  /** Rows of the ticket, seats and transactions tables per second. */
  rowsPerSecond: number;
  /** ticketsPerSecond ÷ the 1-member figure. */
  speedup: number;
  /** Tickets/s gained over the run with one member fewer (null for the first). */
  gainOverPrevious: number | null;
  /** Messages each member consumed (its summary line), and its own rate. */
  perMember: { consumed: number; ticketsPerSecond: number }[];
  /** First spawn to the last exit (start-up and the idle timeout included). */
  wallSeconds: number;
  exact: boolean;
  /** CPU of the members together, of the group's PostgreSQL sessions and of the broker. */
  cpu?: DrainCpu;
}

/** Restart of a member after a signal. */
export interface RestartFigure {
  signal: "SIGKILL" | "SIGTERM";
  /** Signal to the process's exit. */
  exitSeconds: number;
  /** The replacement's spawn to its first stored row. */
  restartToFirstRowSeconds: number | null;
  /** The signal to the first row stored after it. */
  signalToFirstRowSeconds: number | null;
  /** Rows in the table when the signal was sent. */
  rowsAtSignal: number;
}

/** Results of {@linkcode benchScale}. */
export interface ScaleResults {
  tickets: number;
  partitions: number;
  runs: ScaleRun[];
  restartTickets: number;
  restarts: RestartFigure[];
  /** The restart drain stored every ticket exactly once. */
  restartExact: boolean;
}

/** Runs the drains, then the restart figures. */
export async function benchScale(suffix: string, sizes: ScaleSizes): Promise<ScaleResults> {
  const access = await stackAccess("SSL");
  const scope = new CleanupScope();
  try {
    const topic = await filledTopic(
      access,
      scope,
      benchName("scale", suffix),
      sizes,
      sizes.tickets,
    );
    const runs: ScaleRun[] = [];
    for (const members of sizes.members) {
      const table = await freshTable(access, scope, benchName(`scale${members}`, suffix));
      runs.push(await drainWith(access, scope, topic, table, members, sizes.tickets, runs));
    }
    const restartTopic = await filledTopic(
      access,
      scope,
      benchName("restart", suffix),
      sizes,
      sizes.restartTickets,
    );
    const table = await freshTable(access, scope, benchName("restart", suffix));
    const { restarts, exact } = await restartFigures(access, scope, restartTopic, table, sizes);
    return {
      tickets: sizes.tickets,
      partitions: sizes.partitions,
      runs,
      restartTickets: sizes.restartTickets,
      restarts,
      restartExact: exact,
    };
  } finally {
    await scope.close();
    await releaseAccess(access);
  }
}

async function filledTopic(
  access: StackAccess,
  scope: CleanupScope,
  topic: string,
  sizes: ScaleSizes,
  tickets: number,
): Promise<string> {
  scope.topics(access, [topic]);
  await ensureTopic(createKafka(access.connection.kafka), topic, sizes.partitions);
  progress(`scale: producing ${tickets} tickets to ${sizes.partitions} partitions`);
  await runProducer({ kafka: access.connection.kafka, topic, num: tickets });
  return topic;
}

/** A fresh ticket table (and its group's rows), dropped when the scope closes. */
async function freshTable(access: StackAccess, scope: CleanupScope, table: string) {
  const group = defaultGroupId("public", table);
  scope.groups(access, [group]);
  scope.table(access, table, [group]);
  await setupDatabase(access.connection, { schema: "public", table });
  return table;
}

async function drainWith(
  access: StackAccess,
  scope: CleanupScope,
  topic: string,
  table: string,
  members: number,
  tickets: number,
  previous: ScaleRun[],
): Promise<ScaleRun> {
  progress(`scale: ${members} consumer process(es) in group ${defaultGroupId("public", table)}`);
  await checkpoint(access);
  const started = performance.now();
  const consumers = Array.from(
    { length: members },
    () => new ConsumerProcess(access, topic, table, IDLE_TIMEOUT_SECONDS),
  );
  scope.add(`stop the consumers of ${table}`, async () => {
    for (const c of consumers) c.stop();
    await Promise.all(consumers.map((c) => c.exit()));
  });
  const watch = await watchDrain(
    access,
    scope,
    () => consumers.map((c) => c.pid),
    defaultGroupId("public", table),
  );
  let runs;
  try {
    runs = await Promise.all(consumers.map((c) => c.wait()));
  } finally {
    for (const c of consumers) c.stop();
  }
  const wallSeconds = (performance.now() - started) / 1000;
  const counts = await countRows(access, table);
  const span = await storedSpan(access, table);
  const rows = await tableRows(access, table);
  const seconds = (span.lastMs - span.firstMs) / 1000;
  const ticketsPerSecond = perSecond(counts.rows + counts.refused, seconds);
  const one = previous[0]?.ticketsPerSecond ?? ticketsPerSecond;
  const before = previous.at(-1);
  const run: ScaleRun = {
    members,
    tickets: counts.rows + counts.refused,
    seconds,
    ticketsPerSecond,
    rowsPerSecond: perSecond(rows, seconds),
    speedup: ticketsPerSecond / one,
    gainOverPrevious: before ? ticketsPerSecond - before.ticketsPerSecond : null,
    perMember: runs.map((r) => ({
      consumed: r.summary!.consumed,
      ticketsPerSecond: r.summary!.ticketsPerSecond,
    })),
    wallSeconds,
    exact: counts.rows === counts.distinctRows && counts.rows + counts.refused === tickets,
    cpu: await watch.stop(counts.rows + counts.refused, seconds),
  };
  progress(
    `scale: ${members} member(s): ${Math.round(ticketsPerSecond)} tickets/s first row to last ` +
      `(${run.speedup.toFixed(2)}x one), consumed ${
        run.perMember.map((m) => m.consumed).join(" + ")
      }, ${run.exact ? "exact" : "NOT EXACT"}${
        run.cpu ? `; CPU ${describeDrainCpu(run.cpu)}` : ""
      }`,
  );
  return run;
}

/** Rows in the table, and the first `stored_at` after `sinceMs` (ms since the epoch). */
async function rowsSince(access: StackAccess, table: string, sinceMs: number) {
  const db = await openDatabase(access, 1);
  try {
    const { rows } = await db.pool.query<{ n: string; first_ms: number | null }>(
      `SELECT count(*) AS n, (extract(epoch FROM min(stored_at)
         FILTER (WHERE stored_at > to_timestamp($1::float8 / 1000))) * 1000)::float8 AS first_ms
       FROM public.${quoteIdent(table)}`,
      [sinceMs],
    );
    return { rows: Number(rows[0]!.n), firstMs: rows[0]!.first_ms };
  } finally {
    await db.pool.end();
  }
}

/** Polls every 100 ms until `done` holds; throws after {@linkcode WAIT_SECONDS}. */
async function waitUntil(what: string, done: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + WAIT_SECONDS * 1000;
  while (!(await done())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${WAIT_SECONDS} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * One member drains; at a fifth of the tickets it is killed (SIGKILL) and a replacement started
 * at once; at two fifths the replacement is stopped (SIGTERM) and another started, which drains
 * the rest. The table must then hold every ticket exactly once.
 */
async function restartFigures(
  access: StackAccess,
  scope: CleanupScope,
  topic: string,
  table: string,
  sizes: ScaleSizes,
): Promise<{ restarts: RestartFigure[]; exact: boolean }> {
  const extra = sizes.restartBatchSize ? ["--batch-size", String(sizes.restartBatchSize)] : [];
  const start = (idle?: number) => {
    const c = new ConsumerProcess(access, topic, table, idle, extra);
    scope.add("stop a consumer", async () => {
      c.stop();
      await c.exit();
    });
    return c;
  };
  const restarts: RestartFigure[] = [];
  let member = start();
  for (const [signal, share] of [["SIGKILL", 0.2], ["SIGTERM", 0.4]] as const) {
    const at = Math.round(sizes.restartTickets * share);
    await waitUntil(`${at} rows`, async () => (await countRows(access, table)).rows >= at);
    const rowsAtSignal = (await countRows(access, table)).rows;
    const signalMs = Date.now();
    const signalled = performance.now();
    member.kill(signal);
    const exit = await member.exit();
    const exitSeconds = (performance.now() - signalled) / 1000;
    if (signal === "SIGTERM" && exit.code !== 0) {
      throw new Error(`the consumer exited with code ${exit.code} after SIGTERM`);
    }
    const restartMs = Date.now();
    const last = signal === "SIGTERM";
    member = start(last ? IDLE_TIMEOUT_SECONDS : undefined);
    progress(`scale: ${signal} at ${rowsAtSignal} rows; exit after ${exitSeconds.toFixed(2)} s`);
    const seen: { firstMs: number | null } = { firstMs: null };
    await waitUntil(`a row after ${signal}`, async () => {
      seen.firstMs = (await rowsSince(access, table, restartMs)).firstMs;
      const counts = await countRows(access, table);
      return seen.firstMs !== null || counts.rows + counts.refused >= sizes.restartTickets;
    });
    const firstMs = seen.firstMs;
    const figure: RestartFigure = {
      signal,
      exitSeconds,
      restartToFirstRowSeconds: firstMs === null ? null : (firstMs - restartMs) / 1000,
      signalToFirstRowSeconds: firstMs === null ? null : (firstMs - signalMs) / 1000,
      rowsAtSignal,
    };
    progress(
      `scale: after ${signal}, first new row ${
        figure.restartToFirstRowSeconds?.toFixed(2) ?? "(none: all stored)"
      } s after the restart`,
    );
    restarts.push(figure);
  }
  const out = await member.exit();
  const summary = parseConsumerSummary(out.stdout);
  if (out.code !== 0 || !summary) throw new Error(`the last consumer exited with code ${out.code}`);
  const counts = await countRows(access, table);
  const exact = counts.rows === counts.distinctRows &&
    counts.rows + counts.refused === sizes.restartTickets;
  progress(`scale: restart drain ${exact ? "exact" : "NOT EXACT"}`);
  return { restarts, exact };
}
