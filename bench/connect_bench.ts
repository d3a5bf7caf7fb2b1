/**
 * The peer: the same tickets drained by our consumer and by Kafka Connect's standalone worker with
 * the Debezium JDBC sink connector (insert and upsert modes), one after the other on the same
 * stack, each from its own topic of the same partitions into its own table.
 * @module
 */
import { join } from "node:path";
import { TicketGenerator } from "../lib/model/generator.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { quoteIdent } from "../lib/postgres/schema.ts";
import type { Database } from "../lib/postgres/postgres.ts";
import {
  benchName,
  checkpoint,
  CleanupScope,
  countRows,
  freshPipeline,
  loadAverage,
  openDatabase,
  perSecond,
  progress,
  ratio,
  releaseAccess,
  ROOT,
  type StackAccess,
  stackAccess,
  storedSpan,
} from "./common.ts";
import {
  connectEnvelope,
  type ConnectMode,
  type ConnectRunConfig,
  connectTableDdl,
  ConnectWorker,
  ensureConnectJars,
} from "./connect_worker.ts";
import { startConsumer } from "./consumer_process.ts";
import { tableRows } from "./sink_bench.ts";

/** Seed of the section's tickets: both topics get the same ones. */
const PEER_SEED = 20261203;
/** Seconds without a new row after which a worker run is given up. */
const STALL_SECONDS = 120;

/** Sizes and settings of the peer section. */
export interface PeerSizes {
  tickets: number;
  partitions: number;
  /** The connector's `batch.size` (and the worker's `consumer.max.poll.records`). */
  batchSize: number;
  modes: ConnectMode[];
  /** Properties replaced for a try (`--connect-set`; `worker.` prefix for the worker's). */
  overrides?: Record<string, string>;
}

/** One worker run. */
export interface PeerRun {
  mode: ConnectMode;
  tasks: number;
  batchSize: number;
  rows: number;
  distinctRows: number;
  /** Every ticket once: N rows, N distinct (the connector delivers at least once). */
  exact: boolean;
  /** First row to last row (`stored_at`). */
  seconds: number;
  ticketsPerSecond: number;
  /** One row per ticket. */
  rowsPerSecond: number;
  /** Spawn to the worker's "Kafka Connect started" line (JVM, plugin scan, REST). */
  workerStartSeconds: number | null;
  /** Spawn to the first row (start, group join, first fetch and batch). */
  firstRowSeconds: number;
  /** Spawn to the last row. */
  wallSeconds: number;
  /** Tickets per second counting from the spawn. */
  ticketsPerSecondWithStart: number;
  /** The machine's load averages right after (others share it). */
  loadAfter: number[];
}

/** Our consumer on the same tickets. */
export interface PeerOurs {
  tickets: number;
  /** First message to last commit (the consumer's summary; the e2e figure). */
  seconds: number;
  ticketsPerSecond: number;
  /** Rows of the ticket, seats and transactions tables. */
  rows: number;
  rowsPerSecond: number;
  rowsPerTicket: number;
  /** First row to last row (`stored_at`), as the peer is timed. */
  storedSpanTicketsPerSecond: number;
  refused: number;
  exact: boolean;
  processSeconds: number;
  /** The machine's load averages right after (others share it). */
  loadAfter: number[];
}

/** Results of {@linkcode benchPeer}. */
export interface PeerResults {
  tickets: number;
  partitions: number;
  listener: "SSL" | "PLAINTEXT";
  database: string;
  worker: string;
  connector: string;
  /** The connector's properties of the last run (no password). */
  connectorConfig: Record<string, string>;
  ours: PeerOurs;
  runs: PeerRun[];
  /** Ours ÷ each mode's tickets/s, and ÷ the faster mode. */
  ratios: { vsInsert: number | null; vsUpsert: number | null; vsBest: number | null };
}

function pomVersion(name: string): string {
  const pom = Deno.readTextFileSync(join(ROOT, "dev/connect-pom.xml"));
  return new RegExp(`<${name}>([^<]+)</${name}>`).exec(pom)?.[1] ?? "?";
}

/** Runs ours, then the worker in each mode, on the same tickets. */
export async function benchPeer(suffix: string, sizes: PeerSizes): Promise<PeerResults> {
  const access = await stackAccess("SSL");
  const scope = new CleanupScope();
  try {
    const pluginPath = await ensureConnectJars();
    const ours = await drainOurs(access, scope, suffix, sizes);
    const topic = benchName("peer_connect", suffix);
    scope.topics(access, [topic]);
    progress(`peer: producing the same ${sizes.tickets} tickets in Connect's JSON envelope`);
    const generator = new TicketGenerator({ seed: PEER_SEED });
    await runProducer({
      kafka: access.connection.kafka,
      topic,
      num: sizes.tickets,
      partitions: sizes.partitions,
      source: () => {
        const t = generator.next();
        return { key: t.ticket_id, value: connectEnvelope(t) };
      },
    });
    const dir = await Deno.makeTempDir({ prefix: "bench-connect-" });
    scope.add("remove the worker's folder", () => Deno.remove(dir, { recursive: true }));
    const runs: PeerRun[] = [];
    let shown: Record<string, string> = {};
    for (const mode of sizes.modes) {
      const run: ConnectRunConfig = {
        name: benchName(`peer_${mode}`, suffix),
        topic,
        table: benchName(`peer_${mode}`, suffix),
        mode,
        tasks: sizes.partitions,
        batchSize: sizes.batchSize,
        overrides: sizes.overrides,
      };
      const result = await connectRun(access, scope, dir, run, sizes.tickets, pluginPath);
      runs.push(result.run);
      shown = result.shown;
    }
    const rate = (mode: ConnectMode) => runs.find((r) => r.mode === mode)?.ticketsPerSecond;
    const best = Math.max(0, ...runs.map((r) => r.ticketsPerSecond));
    return {
      tickets: sizes.tickets,
      partitions: sizes.partitions,
      listener: access.protocol === "SSL" ? "SSL" : "PLAINTEXT",
      database: "SSL (sslmode=require), one PostgreSQL",
      worker: `Kafka Connect ${pomVersion("kafka.version")} standalone`,
      connector: `Debezium JDBC sink ${pomVersion("debezium.version")}`,
      connectorConfig: shown,
      ours,
      runs,
      ratios: {
        vsInsert: ratio(ours.ticketsPerSecond, rate("insert")),
        vsUpsert: ratio(ours.ticketsPerSecond, rate("upsert")),
        vsBest: ratio(ours.ticketsPerSecond, best || undefined),
      },
    };
  } finally {
    await scope.close();
    await releaseAccess(access);
  }
}

/** The e2e path on the section's tickets: our producer, then our consumer as a subprocess. */
async function drainOurs(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  sizes: PeerSizes,
): Promise<PeerOurs> {
  const name = await freshPipeline(access, scope, "peer_ours", suffix);
  progress(`peer: producing ${sizes.tickets} tickets for our consumer`);
  await runProducer({
    kafka: access.connection.kafka,
    topic: name,
    num: sizes.tickets,
    seed: PEER_SEED,
    partitions: sizes.partitions,
  });
  await checkpoint(access);
  const consumer = startConsumer(access, name, name, 3);
  scope.add("stop the consumer", async () => {
    consumer.stop();
    await consumer.wait().catch(() => {});
  });
  const run = await consumer.wait();
  const counts = await countRows(access, name);
  const rows = await tableRows(access, name);
  const span = await storedSpan(access, name);
  const summary = run.summary!;
  const ours: PeerOurs = {
    tickets: summary.consumed,
    seconds: summary.seconds,
    ticketsPerSecond: summary.ticketsPerSecond,
    rows,
    rowsPerSecond: perSecond(rows, summary.seconds),
    rowsPerTicket: rows / Math.max(1, counts.distinctRows),
    storedSpanTicketsPerSecond: perSecond(span.rows, (span.lastMs - span.firstMs) / 1000),
    refused: counts.refused,
    exact: counts.rows === counts.distinctRows && counts.rows + counts.refused === sizes.tickets,
    processSeconds: run.seconds,
    loadAfter: loadAverage(),
  };
  progress(
    `peer: ours ${Math.round(ours.ticketsPerSecond)} tickets/s = ${
      Math.round(ours.rowsPerSecond)
    } rows/s (${ours.exact ? "exact" : "NOT EXACT"})`,
  );
  return ours;
}

/**
 * Rows the statistics collector has seen inserted into a table (no scan: it may lag by up to
 * ~10 s, and counts aborted inserts too), and, when that reaches `expected` or `exact` is set, the
 * table's real `count(*)`. Polling `count(*)` itself would cost the database a scan each time.
 */
async function pollRows(
  db: Database,
  table: string,
  expected: number,
  exact: boolean,
): Promise<number> {
  // a new transaction each time, so the statistics snapshot is fresh
  const { rows } = await db.pool.query<{ n: string | null }>(
    `SELECT n_tup_ins AS n FROM pg_stat_user_tables WHERE relid = $1::regclass`,
    [`public.${quoteIdent(table)}`],
  );
  const seen = Number(rows[0]?.n ?? 0);
  if (seen < expected && !exact) return seen;
  const count = await db.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM public.${quoteIdent(table)}`,
  );
  return Number(count.rows[0]!.n);
}

/** One worker run into a fresh table until every ticket is there; the worker is stopped after. */
async function connectRun(
  access: StackAccess,
  scope: CleanupScope,
  dir: string,
  run: ConnectRunConfig,
  tickets: number,
  pluginPath: string,
): Promise<{ run: PeerRun; shown: Record<string, string> }> {
  scope.groups(access, [`connect-${run.name}`]);
  scope.table(access, run.table);
  const db = await openDatabase(access, 1);
  scope.add("close the polling connection", () => db.pool.end());
  await db.pool.query(connectTableDdl(run.table));
  await checkpoint(access);
  const { worker, shown } = await ConnectWorker.start(access, dir, run, pluginPath);
  scope.add(`stop the worker of ${run.name}`, () => worker.stop());
  const spawnedMs = worker.spawnedMs;
  let ready: number | undefined;
  let last = -1;
  let lastChange = performance.now();
  for (let poll = 1;; poll++) {
    ready ??= await worker.readySeconds();
    // a real count every 10 s in case the statistics lag or count differently
    const count = await pollRows(db, run.table, tickets, poll % 50 === 0);
    if (count >= tickets && (await pollRows(db, run.table, tickets, true)) >= tickets) break;
    if (count !== last) [last, lastChange] = [count, performance.now()];
    if (worker.exit) {
      throw new Error(`the worker exited (code ${worker.exit.code}): ${worker.errors()}`);
    }
    if (performance.now() - lastChange > STALL_SECONDS * 1000) {
      throw new Error(`no new row for ${STALL_SECONDS} s at ${count} rows: ${worker.errors()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await worker.stop();
  const span = await storedSpan(access, run.table);
  const seconds = (span.lastMs - span.firstMs) / 1000;
  const result: PeerRun = {
    mode: run.mode,
    tasks: Number(shown["tasks.max"]),
    batchSize: Number(shown["batch.size"]),
    rows: span.rows,
    distinctRows: span.distinctRows,
    exact: span.rows === tickets && span.distinctRows === tickets,
    seconds,
    ticketsPerSecond: perSecond(span.distinctRows, seconds),
    rowsPerSecond: perSecond(span.rows, seconds),
    workerStartSeconds: ready ?? null,
    firstRowSeconds: (span.firstMs - spawnedMs) / 1000,
    wallSeconds: (span.lastMs - spawnedMs) / 1000,
    ticketsPerSecondWithStart: perSecond(span.distinctRows, (span.lastMs - spawnedMs) / 1000),
    loadAfter: loadAverage(),
  };
  progress(
    `peer: Debezium JDBC ${run.mode}: ${Math.round(result.ticketsPerSecond)} tickets/s first row ` +
      `to last (${Math.round(result.ticketsPerSecondWithStart)}/s from the spawn; worker started ` +
      `in ${result.workerStartSeconds?.toFixed(1) ?? "?"} s, first row at ${
        result.firstRowSeconds.toFixed(1)
      } s)`,
  );
  return { run: result, shown };
}
