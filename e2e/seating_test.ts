/** Seats and payment transactions, and the choice of database and schema. */
import assert from "node:assert/strict";
import { runConsumer } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { quoteIdent } from "../lib/postgres/schema.ts";
import {
  deleteTopics,
  runScript,
  sql,
  stackConnection,
  uniqueSuffix,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";
import type { Ticket } from "../lib/model/columns.ts";
import { verifyPipeline } from "../lib/commands/verify.ts";

Deno.test("a ticket whose seat is sold is refused whole (SEAT_TAKEN); seats and transactions match tickets", async () => {
  await withPipeline("e2e_seats", async ({ connection, topic, table, q }) => {
    const produced: Ticket[] = [];
    await runProducer({
      kafka: connection.kafka,
      topic,
      num: 3_000,
      seed: 77,
      seatClashRate: 0.03,
      onTicket: (t) => produced.push(t),
    });
    const summary = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    assert.ok(summary.seatTaken > 30, `only ${summary.seatTaken} clashes`);
    assert.equal(summary.stored + summary.seatTaken, 3_000);
    const refused = await sql<{ id: string; detail: string }>(
      `SELECT convert_from(message_key, 'UTF8') AS id, detail FROM ${q.deadLetters} WHERE target_table = $1 AND reason = 'SEAT_TAKEN'`,
      [table],
    );
    assert.equal(refused.length, summary.seatTaken);
    assert.match(refused[0]!.detail, /^seat [A-Z]\d+ of .* is sold to ticket /);
    const refusedIds = refused.map((r) => r.id);
    // nothing partial: no ticket row, no seat, no transaction for a refused ticket
    const [partial] = await sql<{ n: number }>(
      `SELECT (SELECT count(*) FROM ${q.tickets} WHERE ticket_id = ANY($1))
            + (SELECT count(*) FROM ${q.seats} WHERE ticket_id = ANY($1))
            + (SELECT count(*) FROM ${q.transactions} WHERE ticket_id = ANY($1)) AS n`,
      [refusedIds],
    );
    assert.equal(Number(partial!.n), 0);
    const stored = produced.filter((t) => !refusedIds.includes(t.ticket_id));
    const [counts] = await sql<{ tickets: string; seats: string; tx: string; matched: string }>(
      `SELECT (SELECT count(*) FROM ${q.tickets}) AS tickets, (SELECT count(*) FROM ${q.seats}) AS seats,
              (SELECT count(*) FROM ${q.transactions}) AS tx,
              (SELECT count(*) FROM ${q.tickets} t JOIN ${q.transactions} x USING (ticket_id)
                WHERE x.amount = t.price_amount AND x.currency = t.price_currency AND x.status = 'PAID') AS matched`,
    );
    assert.equal(Number(counts!.tickets), stored.length);
    assert.equal(Number(counts!.seats), stored.reduce((n, t) => n + t.seats.length, 0));
    assert.equal(Number(counts!.tx), stored.length);
    assert.equal(Number(counts!.matched), stored.length);
    const report = await verifyPipeline({ connection, topic, table });
    assert.ok(report.ok, JSON.stringify({ ...report, missing: report.missing.slice(0, 3) }));
    assert.equal(report.refused, summary.seatTaken);
  });
});

Deno.test("two pipelines into two schemas of one database do not see each other", async () => {
  const connection = await stackConnection();
  const creds = await writeStackCreds();
  const id = uniqueSuffix();
  const schemas = [`sa_${id}`, `sb_${id}`];
  const topics = [`e2e_sa_${id}`, `e2e_sb_${id}`];
  try {
    for (const [i, schema] of schemas.entries()) {
      const setup = await runScript("db_setup.ts", [
        "--creds",
        creds,
        "--schema",
        schema,
        "--table-name",
        "movie_ticket",
      ]);
      assert.equal(setup.code, 0, setup.stderr);
      await runProducer({ kafka: connection.kafka, topic: topics[i]!, num: 100 * (i + 1) });
      const run = await runScript("consumer.ts", [
        "--creds",
        creds,
        "--schema",
        schema,
        "--table-name",
        "movie_ticket",
        "--topic-name",
        topics[i]!,
        "--idle-timeout",
        "3",
        "--no-metrics-log",
      ]);
      assert.equal(run.code, 0, run.stderr);
    }
    for (const [i, schema] of schemas.entries()) {
      const [row] = await sql<{ n: string; topics: string[] }>(
        `SELECT count(*) AS n, array_agg(DISTINCT kafka_topic) AS topics FROM ${
          quoteIdent(schema)
        }.movie_ticket`,
      );
      assert.equal(Number(row!.n), 100 * (i + 1));
      assert.deepEqual(row!.topics, [topics[i]]);
      const offsets = await sql<{ topic: string }>(
        `SELECT DISTINCT topic FROM ${quoteIdent(schema)}.pipeline_offsets`,
      );
      assert.deepEqual(offsets.map((o) => o.topic), [topics[i]]);
    }
  } finally {
    for (const schema of schemas) await sql(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
    await deleteTopics(connection, topics);
  }
});

Deno.test("injection through --schema, --table-name or --database is refused before any connection", async () => {
  const creds = await writeStackCreds();
  const cases: [string, string[]][] = [
    ["db_setup.ts", ["--table-name", "t", "--schema", "public; drop table x"]],
    ["db_setup.ts", ["--table-name", "t", "--database", "defaultdb; drop database x"]],
    ["consumer.ts", ["--topic-name", "t", "--table-name", "t", "--schema", '"x"']],
    ["consumer.ts", ["--topic-name", "t", "--table-name", "t", "--database", "a'b"]],
    ["verify.ts", ["--topic-name", "t", "--table-name", "t", "--schema", "A-B"]],
    ["tests.ts", ["6", "--schema", "x;y"]],
  ];
  for (const [script, args] of cases) {
    const r = await runScript(script, [...args, "--creds", creds]);
    assert.equal(r.code, 2, `${script} ${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^error: (schema name|database) .* is not allowed/);
  }
});

Deno.test("tests.ts runs all entries in a chosen schema and database", async () => {
  const creds = await writeStackCreds();
  const schema = `menu_${uniqueSuffix()}`;
  try {
    const r = await runScript("tests.ts", [
      "6",
      "--creds",
      creds,
      "--schema",
      schema,
      "--database",
      "defaultdb",
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((r.stdout.match(/^PASS/gm) ?? []).length, 5);
    assert.match(r.stdout, new RegExp(`"${schema}"`));
  } finally {
    await sql(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
  }
});
