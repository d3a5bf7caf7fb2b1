/**
 * End to end: N tickets published with our producer, then drained by our consumer (a subprocess)
 * into a fresh table, checked to hold exactly N distinct rows; the consumer's peak RSS; and the
 * original Python project's consumer loop (`bench/baseline.py`) on a smaller sample.
 * @module
 */
import { join } from "node:path";
import { messageOf } from "../lib/errors.ts";
import { setupDatabase } from "../lib/postgres/setup.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import {
  benchName,
  checkpoint,
  CleanupScope,
  countRows,
  freshPipeline,
  openDatabase,
  ownTables,
  perSecond,
  progress,
  ratio,
  releaseAccess,
  ROOT,
  runProcess,
  type StackAccess,
  stackAccess,
  tail,
} from "./common.ts";
import { startConsumer } from "./consumer_process.ts";
import { describeDrainCpu, type DrainCpu, watchDrain } from "./cpu.ts";
import type { ThroughputFigure } from "./producer_bench.ts";
import { copyFiles, exportRows, timedCopies } from "./psql_copy.ts";
import { type RowsFigure, tableRows } from "./sink_bench.ts";

/** Seconds without a new message after which the consumer exits. */
const IDLE_TIMEOUT_SECONDS = 3;
/** The system Python with Debian's kafka-python and psycopg2 (not a pyenv one on PATH). */
const SYSTEM_PYTHON = "/usr/bin/python3";

/** Sizes of the end-to-end benchmark. */
export interface EndToEndSizes {
  tickets: number;
  /** Messages for the Python baseline. */
  pythonTickets: number;
}

/** The drain by our consumer. */
export interface ConsumeFigure extends ThroughputFigure {
  /** Wall time of the consumer process, start-up and idle timeout included. */
  processSeconds: number;
  rows: number;
  distinctRows: number;
  /** Tickets refused as a whole (SEAT_TAKEN) and recorded as dead letters instead of rows. */
  refused: number;
  /** Every ticket exactly once: N distinct rows, or N counting the refused ones, no duplicate. */
  exact: boolean;
  /** Where the CPU went during the drain; undefined where /proc cannot be read. */
  cpu?: DrainCpu;
}

/** The Python baseline's figure, or why it could not run. */
export type PythonFigure =
  | (ThroughputFigure & { client: string; rows: number })
  | { error: string };

/** Results of {@linkcode benchEndToEnd}. */
export interface EndToEndResults {
  tickets: number;
  listener: "SSL";
  produce: ThroughputFigure;
  consume: ConsumeFigure;
  /**
   * `psql \copy` of the rows the drain stored, loaded again into fresh tables on one connection:
   * the database's limit for the same rows at the same size.
   */
  copy: RowsFigure & { wallSeconds: number };
  python: PythonFigure;
  /** ours ÷ theirs in tickets/s. */
  ratios: { vsPython: number | null; vsCopy: number | null };
}

/** The consumer's memory during the drain. */
export interface MemoryResults {
  tickets: number;
  consumerPeakRssMiB: number;
}

/** Runs the end-to-end drain and the Python baseline. */
export async function benchEndToEnd(
  suffix: string,
  sizes: EndToEndSizes,
): Promise<{ e2e: EndToEndResults; memory: MemoryResults }> {
  const access = await stackAccess("SSL");
  try {
    const { produce, consume, copy, peakRssMiB } = await drain(access, suffix, sizes.tickets);
    const python = await pythonBaseline(access, suffix, sizes.pythonTickets);
    const pythonRate = "error" in python ? undefined : python.ticketsPerSecond;
    return {
      e2e: {
        tickets: sizes.tickets,
        listener: "SSL",
        produce,
        consume,
        copy,
        python,
        ratios: {
          vsPython: ratio(consume.ticketsPerSecond, pythonRate),
          vsCopy: ratio(consume.ticketsPerSecond, copy.ticketsPerSecond),
        },
      },
      memory: { tickets: sizes.tickets, consumerPeakRssMiB: peakRssMiB },
    };
  } finally {
    await releaseAccess(access);
  }
}

async function drain(access: StackAccess, suffix: string, tickets: number) {
  const scope = new CleanupScope();
  try {
    const name = await freshPipeline(access, scope, "e2e", suffix);
    progress(`e2e: producing ${tickets} tickets`);
    const sent = await runProducer({ kafka: access.connection.kafka, topic: name, num: tickets });
    const produce = {
      tickets: sent.sent,
      seconds: sent.seconds,
      ticketsPerSecond: perSecond(sent.sent, sent.seconds),
    };
    progress(`e2e: produced at ${Math.round(produce.ticketsPerSecond)} tickets/s; draining`);
    await checkpoint(access);
    const consumer = startConsumer(access, name, name, IDLE_TIMEOUT_SECONDS);
    scope.add("stop the consumer", async () => {
      consumer.stop();
      await consumer.wait().catch(() => {});
    });
    const watch = await watchDrain(access, scope, () => [consumer.pid], consumer.groupId);
    const run = await consumer.wait();
    const counts = await countRows(access, name);
    const summary = run.summary!;
    const cpu = await watch.stop(summary.consumed, summary.seconds);
    const consume: ConsumeFigure = {
      tickets: summary.consumed,
      seconds: summary.seconds,
      ticketsPerSecond: summary.ticketsPerSecond,
      processSeconds: run.seconds,
      ...counts,
      exact: counts.rows === counts.distinctRows && counts.rows + counts.refused === tickets,
      cpu,
    };
    progress(
      `e2e: consumed at ${consume.ticketsPerSecond} tickets/s; table has ${counts.distinctRows} distinct rows + ${counts.refused} refused of ${tickets} (${
        consume.exact ? "exact" : "NOT EXACT"
      }); consumer peak RSS ${run.peakRssMiB.toFixed(0)} MiB`,
    );
    if (consume.cpu) progress(`e2e: CPU ${describeDrainCpu(consume.cpu)}`);
    const copy = await copyDrained(access, scope, suffix, name, counts.distinctRows);
    return { produce, consume, copy, peakRssMiB: run.peakRssMiB };
  } finally {
    await scope.close();
  }
}

/**
 * Loads the rows the drain stored in `drained` into fresh tables with `psql \copy`, after a
 * CHECKPOINT as the drain had: the same rows, at the same size, from empty tables.
 */
async function copyDrained(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  drained: string,
  tickets: number,
): Promise<RowsFigure & { wallSeconds: number }> {
  const table = benchName("e2e_copy", suffix);
  scope.table(access, table);
  await setupDatabase(access.connection, { schema: "public", table });
  const dir = await Deno.makeTempDir({ prefix: "tickets-e2e-" });
  scope.add("remove the CSV files", () => Deno.remove(dir, { recursive: true }));
  const files = copyFiles(table, dir);
  await exportRows(access, drained, files);
  // the drained tables go now: an autovacuum of theirs would run during the load
  const db = await openDatabase(access, 1);
  try {
    await db.pool.query(`DROP TABLE IF EXISTS ${ownTables(drained).join(", ")}`);
  } finally {
    await db.pool.end();
  }
  await checkpoint(access);
  progress(`e2e: psql \\copy of the drained rows (${tickets} tickets) into fresh tables`);
  const timing = await timedCopies(access, table, files);
  const rows = await tableRows(access, table);
  const figure = {
    tickets,
    rows,
    seconds: timing.seconds,
    ticketsPerSecond: perSecond(tickets, timing.seconds),
    rowsPerSecond: perSecond(rows, timing.seconds),
    serverCpuSeconds: timing.serverCpuSeconds,
    wallSeconds: timing.wallSeconds,
  };
  progress(`e2e: psql \\copy ${Math.round(figure.ticketsPerSecond)} tickets/s`);
  return figure;
}

/** Installs kafka-python and psycopg2 for the system Python when missing (idempotent). */
async function ensurePython(): Promise<string | undefined> {
  const out = await runProcess("bash", [join(ROOT, "bench/ensure_python.sh")]);
  return out.code === 0 ? undefined : `bench/ensure_python.sh failed: ${tail(out.stderr, 3)}`;
}

async function kafkaPythonVersion(): Promise<string> {
  const out = await runProcess(SYSTEM_PYTHON, ["-c", "import kafka; print(kafka.__version__)"]);
  return `kafka-python ${out.stdout.trim() || "?"}`;
}

async function pythonBaseline(
  access: StackAccess,
  suffix: string,
  tickets: number,
): Promise<PythonFigure> {
  const missing = await ensurePython();
  if (missing) return { error: missing };
  const scope = new CleanupScope();
  const groupId = benchName("python", suffix);
  try {
    const name = await freshPipeline(access, scope, "python", suffix, [groupId]);
    progress(`python baseline: producing ${tickets} tickets`);
    await runProducer({ kafka: access.connection.kafka, topic: name, num: tickets });
    progress(
      `python baseline: kafka-python + psycopg2, one INSERT per row (ticket, seats, transaction), one commit per message`,
    );
    const out = await runProcess(SYSTEM_PYTHON, [
      join(ROOT, "bench/baseline.py"),
      "--bootstrap",
      access.bootstrap,
      "--security-protocol",
      access.protocol,
      "--cert-path",
      access.certPath,
      "--topic",
      name,
      "--table",
      name,
      "--group-id",
      groupId,
      "--num",
      String(tickets),
    ], { env: { POSTGRES_URI: access.connection.postgresUri } });
    const result = parseBaselineOutput(out.stdout);
    if (out.code !== 0 || !result) {
      return {
        error: `bench/baseline.py exited with code ${out.code}: ${
          tail(out.stderr || out.stdout, 3)
        }`,
      };
    }
    const { rows } = await countRows(access, name);
    progress(`python baseline: ${Math.round(result.ticketsPerSecond)} tickets/s`);
    return { ...result, client: await kafkaPythonVersion(), rows };
  } catch (error) {
    return { error: messageOf(error) };
  } finally {
    await scope.close();
  }
}

function parseBaselineOutput(stdout: string): ThroughputFigure | undefined {
  try {
    const last = JSON.parse(stdout.trim().split("\n").at(-1) ?? "");
    if (typeof last.ticketsPerSecond !== "number") return undefined;
    return {
      tickets: last.messages,
      seconds: last.seconds,
      ticketsPerSecond: last.ticketsPerSecond,
    };
  } catch {
    return undefined;
  }
}
