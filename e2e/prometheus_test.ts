/**
 * End-to-end: a consumer run and a producer run serve `/metrics` while they last; a live scrape
 * passes `promtool check metrics` and its counts agree with the database.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConsumerMetrics, ProducerMetrics } from "../lib/observe/prometheus.ts";
import { runConsumer } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import {
  collect,
  freePort,
  kcatProduce,
  ROOT,
  runScript,
  spawnScript,
  sql,
  waitFor,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";
import { promtool, promtoolCheck, seriesValue } from "../testing/prometheus.ts";

/** The text of one scrape. */
async function scrape(url: string): Promise<string> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  return await response.text();
}

/** Asserts that promtool finds nothing wrong with a scrape. */
async function assertPromtoolAccepts(text: string): Promise<void> {
  const check = await promtoolCheck(text);
  assert.equal(check.code, 0, `promtool check metrics: ${check.output}`);
}

Deno.test("consumer --metrics-port: a live scrape passes promtool and counts what the database holds, lag per partition included", async () => {
  await withPipeline("prom", async ({ connection, topic, table, q }) => {
    await runProducer({ kafka: connection.kafka, topic, num: 2000, seed: 7, seatClashRate: 0.05 });
    await kcatProduce(topic, [["poison-1", "not json"], ["poison-2", "[1]"]]);
    const port = freePort();
    const url = `http://127.0.0.1:${port}/metrics`;
    // idle long enough for a 5-s snapshot to set the lag after the drain
    const run = runConsumer({
      connection,
      topic,
      table,
      idleTimeoutSeconds: 8,
      prometheus: { port },
    });
    let text = "";
    try {
      await waitFor("a scrape showing every message written and no lag", async () => {
        text = await scrape(url);
        const lag = [0, 1, 2].map((p) =>
          seriesValue(text, "tickets_consumer_lag_messages", { partition: String(p) })
        );
        return seriesValue(text, "tickets_received_total") === 2002 && lag.every((l) => l === 0);
      }, 30_000);
    } finally {
      await run;
    }
    await assertPromtoolAccepts(text);

    const labels = { role: "consumer", topic, table: `public.${table}` };
    const value = (name: string, more: Record<string, string> = {}) =>
      seriesValue(text, name, { ...labels, ...more }) ?? 0;
    const [rows] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${q.tickets}`);
    assert.equal(value("tickets_stored_total"), rows!.n);
    const letters = await sql<{ reason: string; n: number }>(
      `SELECT reason, count(*)::int AS n FROM ${q.deadLetters} WHERE target_table = $1
       GROUP BY reason`,
      [table],
    );
    assert.ok(letters.some((l) => l.reason === "SEAT_TAKEN"), "the run had no seat clash");
    assert.ok(letters.length >= 2, `dead letters of one reason only: ${JSON.stringify(letters)}`);
    for (const { reason, n } of letters) {
      assert.equal(value("tickets_dead_letters_total", { reason }), n, reason);
    }
    assert.equal(
      value("tickets_stored_total") + value("tickets_duplicates_total") +
        value("tickets_conflicts_total") + letters.reduce((sum, l) => sum + l.n, 0),
      2002,
    );
    assert.equal(value("tickets_fenced_batches_total"), 0);
    assert.ok(value("tickets_batch_write_seconds_count") > 0);
    // every ticket that parsed has a publish-to-row latency; the two poison messages do not
    assert.equal(value("tickets_publish_to_row_seconds_count"), 2000);
    assert.ok(value("process_resident_memory_bytes") > 10_000_000);
    // the endpoint ends with the run
    await assert.rejects(fetch(url));
  });
});

Deno.test("producer.ts --metrics-port: a live scrape passes promtool and counts the tickets sent; the endpoint ends with the run", async () => {
  await withPipeline("prom_p", async ({ topic }) => {
    const port = freePort();
    const url = `http://127.0.0.1:${port}/metrics`;
    const creds = await writeStackCreds();
    const child = spawnScript("producer.ts", [
      ...["--creds", creds, "--topic-name", topic, "--no-metrics-log"],
      ...["--continuous", "--rate", "500", "--metrics-port", String(port)],
    ]);
    const producer = collect(child);
    let text = "";
    try {
      await waitFor("a scrape showing tickets sent", async () => {
        text = await scrape(url);
        return (seriesValue(text, "tickets_sent_total", { role: "producer", topic }) ?? 0) > 0;
      }, 30_000);
    } finally {
      child.kill("SIGTERM");
    }
    const status = await producer.done;
    assert.equal(status.code, 0, producer.stderr());
    assert.match(producer.stderr(), new RegExp(`metrics at ${url}`));
    await assertPromtoolAccepts(text);
    const sent = seriesValue(text, "tickets_sent_total", { topic })!;
    const total = Number(/sent (\d+) tickets/.exec(producer.stdout())?.[1]);
    assert.ok(sent > 0 && sent <= total, `${sent} of ${total}`);
    assert.equal(seriesValue(text, "tickets_unsent_total", { topic }), 0);
    await assert.rejects(fetch(url));
  });
});

Deno.test("producer.ts refuses a --metrics-port out of range, and one in use, with exit 2", async () => {
  const creds = await writeStackCreds();
  const args = ["--creds", creds, "--topic-name", "prom_unused", "--no-metrics-log"];
  const outOfRange = await runScript("producer.ts", [...args, "--metrics-port", "70000"]);
  assert.equal(outOfRange.code, 2);
  assert.match(outOfRange.stderr, /--metrics-port/);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = String((listener.addr as Deno.NetAddr).port);
    const busy = await runScript("producer.ts", [...args, "--metrics-port", port]);
    assert.equal(busy.code, 2);
    assert.match(busy.stderr, new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${port}`));
  } finally {
    listener.close();
  }
});

Deno.test("dev/grafana-dashboard.json: every query parses (promtool check rules) and names only metrics the endpoints serve", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(join(ROOT, "dev/grafana-dashboard.json")));
  const exprs: string[] = dashboard.panels.flatMap((p: { targets: { expr: string }[] }) =>
    p.targets.map((t) => t.expr)
  );
  assert.ok(exprs.length >= 10);
  // Grafana's variables, as Grafana would fill them in
  const promql = exprs.map((e) =>
    e.replaceAll("$__rate_interval", "1m").replaceAll("$__range", "1h")
      .replaceAll("$topic", ".*").replaceAll("$group", ".*")
  );
  const rules = join(await Deno.makeTempDir({ prefix: "tickets-dashboard-" }), "rules.yml");
  await Deno.writeTextFile(
    rules,
    "groups:\n  - name: dashboard\n    rules:\n" +
      promql.map((e, i) =>
        `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(e)}\n`
      )
        .join(""),
  );
  const check = await promtool(["check", "rules", rules]);
  assert.equal(check.code, 0, check.output);
  assert.match(check.output, new RegExp(`SUCCESS: ${promql.length} rules found`));

  // the series the endpoints serve: each family, and a histogram's _bucket, _sum and _count
  const served = new Set<string>();
  const text = await new ConsumerMetrics({ topic: "t", group: "g", table: "t" }).text() +
    await new ProducerMetrics("t").text();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    served.add(name!);
    if (type === "histogram") {
      for (const s of ["_bucket", "_sum", "_count"]) served.add(name + s);
    }
  }
  const variables = dashboard.templating.list.map((v: { definition?: string }) =>
    v.definition ?? ""
  );
  for (const query of [...exprs, ...variables]) {
    for (const [name] of query.matchAll(/\b(tickets_[a-z_]+|process_[a-z_]+)\b/g)) {
      assert.ok(served.has(name), `the dashboard asks for ${name}, which no endpoint serves`);
    }
  }
});
