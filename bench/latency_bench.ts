/**
 * Publish-to-row latency: the consumer (a subprocess) already running, the producer at a steady
 * rate; percentiles of `stored_at - published_at` computed in SQL over every row.
 * @module
 */
import { runProducer } from "../lib/pipeline/producer.ts";
import { quoteIdent } from "../lib/postgres/schema.ts";
import {
  CleanupScope,
  countRows,
  createTopic,
  freshPipeline,
  openDatabase,
  progress,
  releaseAccess,
  type StackAccess,
  stackAccess,
} from "./common.ts";
import { startConsumer } from "./consumer_process.ts";

/** Settings of the latency benchmark. */
export interface LatencySizes {
  /** Tickets per second. */
  rate: number;
  seconds: number;
}

/** Results of {@linkcode benchLatency}, in milliseconds. */
export interface LatencyResults {
  rate: number;
  seconds: number;
  /** Rows the percentiles were computed over. */
  rows: number;
  /** Rate the producer actually reached. */
  producedPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Seconds to wait for the last published ticket to be stored. */
const STORE_TIMEOUT_SECONDS = 60;

/** Runs the producer at `rate` for `seconds` into a running consumer; measures in SQL. */
export async function benchLatency(suffix: string, sizes: LatencySizes): Promise<LatencyResults> {
  const access = await stackAccess("SSL");
  const scope = new CleanupScope();
  try {
    const name = await freshPipeline(access, scope, "latency", suffix);
    await createTopic(access, name);
    const consumer = startConsumer(access, name, name);
    scope.add("stop the consumer", async () => {
      consumer.stop();
      await consumer.wait().catch(() => {});
    });
    await consumer.waitUntilJoined(access);
    const tickets = Math.round(sizes.rate * sizes.seconds);
    progress(`latency: ${sizes.rate} tickets/s for ${sizes.seconds} s into the running consumer`);
    const sent = await runProducer({
      kafka: access.connection.kafka,
      topic: name,
      num: tickets,
      rate: sizes.rate,
    });
    await waitForRows(access, name, tickets);
    consumer.stop();
    await consumer.wait();
    const stats = await latencyPercentiles(access, name);
    progress(`latency: p50 ${stats.p50Ms} ms, p99 ${stats.p99Ms} ms, max ${stats.maxMs} ms`);
    return {
      rate: sizes.rate,
      seconds: sizes.seconds,
      producedPerSecond: sent.sent / sent.seconds,
      ...stats,
    };
  } finally {
    await scope.close();
    await releaseAccess(access);
  }
}

async function waitForRows(access: StackAccess, table: string, expected: number): Promise<void> {
  const deadline = performance.now() + STORE_TIMEOUT_SECONDS * 1000;
  for (;;) {
    const { rows } = await countRows(access, table);
    if (rows >= expected) return;
    if (performance.now() > deadline) {
      throw new Error(
        `only ${rows} of ${expected} tickets stored ${STORE_TIMEOUT_SECONDS} s later`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** p50, p99 and max of `stored_at - published_at` over the table's rows, in ms. */
export async function latencyPercentiles(
  access: StackAccess,
  table: string,
): Promise<{ rows: number; p50Ms: number; p99Ms: number; maxMs: number }> {
  const db = await openDatabase(access, 1);
  try {
    const res = await db.pool.query<{ rows: string; p50: number; p99: number; max: number }>(
      `WITH l AS (
         SELECT extract(epoch FROM stored_at - published_at) * 1000 AS ms
         FROM public.${quoteIdent(table)} WHERE published_at IS NOT NULL)
       SELECT count(*) AS rows,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8 AS p50,
         percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::float8 AS p99,
         max(ms)::float8 AS max
       FROM l`,
    );
    const r = res.rows[0]!;
    const round = (x: number) => Math.round(x * 10) / 10;
    return { rows: Number(r.rows), p50Ms: round(r.p50), p99Ms: round(r.p99), maxMs: round(r.max) };
  } finally {
    await db.pool.end();
  }
}
