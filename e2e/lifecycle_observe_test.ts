/**
 * Cancellations and known-answer poison as the observers see them, against the real broker and
 * database: the consumer's metrics records carry `cancelled` and the dead letters by reason, the
 * Prometheus endpoint counts `tickets_cancelled_total`, both equal to what the database holds and
 * the report shows them; and `dlq replay` of UNKNOWN_TICKET letters republishes only the
 * cancellations whose ticket is stored now (or replayed before them), which then apply.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readMetrics } from "../lib/observe/metrics.ts";
import { formatReportSummary, groupRuns } from "../lib/observe/report.ts";
import { runConsumer } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { seriesValue } from "../testing/prometheus.ts";
import { sql, waitFor, withPipeline } from "../testing/testing.ts";

/** A TCP port free right now on 127.0.0.1. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("consumer: metrics records and /metrics count cancellations and dead letters by reason exactly as the database holds them; the report shows them", async () => {
  await withPipeline("e2e_lc_obs", async ({ connection, topic, table, q }) => {
    const dir = await Deno.makeTempDir({ prefix: "tickets-lc-obs-" });
    const metricsLog = join(dir, "metrics.jsonl");
    const produced = await runProducer({
      kafka: connection.kafka,
      topic,
      num: 1200,
      seed: 21,
      batchSize: 100,
      cancelRate: 0.15,
      poisonRate: 0.1,
      manifest: join(dir, "manifest.jsonl"),
    });
    const port = freePort();
    const url = `http://127.0.0.1:${port}/metrics`;
    let text = "";
    const run = runConsumer({
      connection,
      topic,
      table,
      idleTimeoutSeconds: 4,
      metricsLog,
      prometheus: { port },
    });
    try {
      await waitFor("a scrape counting every message of the topic", async () => {
        text = await fetch(url).then((r) => r.text()).catch(() => "");
        return seriesValue(text, "tickets_received_total") === produced.sent;
      }, 30_000);
      const summary = await run;
      const [{ cancelled }] = await sql<{ cancelled: number }>(
        `SELECT count(*)::int AS cancelled FROM ${q.tickets} WHERE status = 'cancelled'`,
      ) as [{ cancelled: number }];
      const letters = Object.fromEntries(
        (await sql<{ reason: string; n: number }>(
          `SELECT reason, count(*)::int AS n FROM ${q.deadLetters} WHERE target_table = $1
           GROUP BY reason ORDER BY reason`,
          [table],
        )).map((l) => [l.reason, l.n]),
      );
      assert.ok(cancelled > 50, `only ${cancelled} cancelled`);
      assert.ok(Object.keys(letters).length >= 8, JSON.stringify(letters));
      assert.ok(letters.UNKNOWN_TICKET! > 0 && letters.SEAT_TAKEN! > 0, JSON.stringify(letters));
      assert.equal(summary.cancelled, cancelled);

      // the metrics history: every consumer record has both, the end record the final counts
      const records = readMetrics(metricsLog).records.filter((r) => r.role === "consumer");
      assert.ok(records.length >= 2);
      for (const r of records) assert.ok(r.deadLettersByReason, `${r.event} record without them`);
      const end = records.find((r) => r.event === "end")!;
      assert.equal(end.counts.cancelled, cancelled);
      assert.deepEqual(end.deadLettersByReason, letters);
      assert.equal(
        Object.values(end.deadLettersByReason!).reduce((a, b) => a + b, 0),
        end.counts.deadLetters,
      );

      // /metrics, scraped live once every message was written
      const labels = { role: "consumer", topic, table: `public.${table}` };
      assert.equal(seriesValue(text, "tickets_cancelled_total", labels), cancelled);
      for (const [reason, n] of Object.entries(letters)) {
        assert.equal(seriesValue(text, "tickets_dead_letters_total", { ...labels, reason }), n);
      }

      // the report reads them: cancelled in the summary, every reason with its count
      const report = formatReportSummary(readMetrics(metricsLog).records, { topic });
      assert.match(report, new RegExp(`consumer: 1 run, stored [\\d,]+, cancelled ${cancelled},`));
      for (const [reason, n] of Object.entries(letters)) {
        assert.match(report, new RegExp(`\\b${reason} ${n.toLocaleString("en-US")}\\b`));
      }
      const [consumerRun] = groupRuns(readMetrics(metricsLog).records).filter((r) =>
        r.role === "consumer" && r.topic === topic
      );
      assert.deepEqual(consumerRun!.deadLettersByReason, letters);
    } finally {
      await run.catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  });
});
