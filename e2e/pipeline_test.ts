/**
 * End-to-end: the real producer and consumer over SSL with client certificates, the real
 * PostgreSQL, compared ticket by ticket.
 */
import assert from "node:assert/strict";
import { defaultGroupId, runConsumer } from "../lib/pipeline/consumer.ts";
import { setupDatabase } from "../lib/postgres/setup.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { qualify } from "../lib/postgres/schema.ts";
import {
  sameTicket,
  STORED_TICKET_SELECT,
  type StoredTicket,
  type Ticket,
} from "../lib/model/columns.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import { createKafka } from "../lib/kafka/kafka.ts";
import {
  consumerCounts,
  deleteTopics,
  dropPipeline,
  runScript,
  spawnScript,
  sql,
  stackConnection,
  uniqueSuffix,
  waitFor,
  waitForSessionsGone,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

type Row = StoredTicket & { ticket_id: string; seats: string };

async function tableRows(table: string): Promise<Row[]> {
  return await sql<Row>(
    `SELECT ${STORED_TICKET_SELECT} FROM ${qualify({ schema: "public", table }).tickets}`,
  );
}

/** Rows in the ticket table (its primary key is ticket_id: a duplicate row cannot exist). */
async function rowCount(table: string): Promise<number> {
  const [row] = await sql<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${qualify({ schema: "public", table }).tickets}`,
  );
  return row!.n;
}

Deno.test("pipeline stores 1,000 tickets exactly as produced, and a second consumer run adds nothing", async () => {
  await withPipeline("e2e", async ({ connection, topic, table }) => {
    const produced: Ticket[] = [];
    const sent = await runProducer({
      kafka: connection.kafka,
      topic,
      num: 1000,
      onTicket: (t) => produced.push(t),
    });
    assert.equal(sent.sent, 1000);
    const first = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    assert.deepEqual(
      [first.received, first.stored, first.duplicates, first.conflicts, first.deadLetters],
      [1000, 1000, 0, 0, 0],
    );
    const rows = await tableRows(table);
    assert.equal(rows.length, 1000);
    const byId = new Map(rows.map((r) => [r.ticket_id, r]));
    for (const t of produced) {
      const row = byId.get(t.ticket_id);
      assert.ok(row, `missing ${t.ticket_id}`);
      assert.equal(row.seats, t.seats.join(","));
      assert.ok(sameTicket(row, t), `fields differ for ${t.ticket_id}`);
    }
    // the stored offsets say everything is done: the second run reads nothing again
    const second = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    assert.deepEqual([second.received, second.stored, second.duplicates], [0, 0, 0]);
    assert.equal(await rowCount(table), 1000);
  });
});

Deno.test("consumer killed with SIGKILL mid-stream and restarted stores 100,000 tickets exactly once", async () => {
  const connection = await stackConnection();
  const creds = await writeStackCreds();
  const id = uniqueSuffix();
  const topic = `e2e_kill_${id}`;
  const table = `e2e_kill_${id}`;
  const total = 100_000;
  const seed = 4242;
  await setupDatabase(connection, { schema: "public", table });
  try {
    await runProducer({ kafka: connection.kafka, topic, num: total, seed });
    const args = [
      "--creds",
      creds,
      "--topic-name",
      topic,
      "--table-name",
      table,
      "--batch-size",
      "500",
      "--no-metrics-log",
    ];
    const child = spawnScript("consumer.ts", args);
    // wait until some, not all, rows are stored, then kill without warning
    for (let i = 0; i < 600; i++) {
      if ((await rowCount(table)) >= 5_000) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGKILL");
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL");
    await child.stdout.cancel();
    await child.stderr.cancel();
    // a commit the killed process sent may still be in flight until its sessions are gone
    await waitForSessionsGone(defaultGroupId("public", table));
    const killedAt = await rowCount(table);
    assert.ok(killedAt > 0 && killedAt < total, `killed after ${killedAt} rows`);
    const rerun = await runScript("consumer.ts", [...args, "--idle-timeout", "4"]);
    assert.equal(rerun.code, 0, rerun.stderr);
    // exactly once, not at-least-once with dedup: the restarted consumer starts at the stored
    // offsets, so it reads each message not yet stored once and nothing already stored
    const rest = total - killedAt;
    const { line: _, ...counted } = consumerCounts(rerun.stdout);
    assert.deepEqual(counted, {
      received: rest,
      stored: rest,
      duplicates: 0,
      conflicts: 0,
      deadLetters: 0,
      fenced: 0,
      lost: 0,
    });
    assert.equal(await rowCount(table), total);
    const generator = new TicketGenerator({ seed });
    const expected = Array.from({ length: total }, () => generator.next().ticket_id);
    const [missing] = await sql<{ n: string }>(
      `SELECT count(*) AS n FROM unnest($1::text[]) AS e(id) WHERE NOT EXISTS (SELECT 1 FROM ${
        qualify({ schema: "public", table }).tickets
      } t WHERE t.ticket_id = e.id)`,
      [expected],
    );
    assert.equal(Number(missing!.n), 0);
  } finally {
    await dropPipeline(table);
    await deleteTopics(connection, [topic]);
  }
});

Deno.test("a message that is not a ticket goes to dead letters; the good ones are stored", async () => {
  await withPipeline("e2e_poison", async ({ connection, topic, table }) => {
    const generator = new TicketGenerator();
    const good: Ticket[] = Array.from({ length: 50 }, () => generator.next());
    const queue: { key: string | null; value: string | null }[] = [];
    for (const [i, t] of good.entries()) {
      queue.push({ key: t.ticket_id, value: JSON.stringify(t) });
      if (i === 10) queue.push({ key: "poison-1", value: "{not json" });
      if (i === 30) {
        queue.push({
          key: null,
          value: JSON.stringify({ ...t, ticket_id: "poison-2", email: "nope" }),
        });
      }
    }
    await runProducer({
      kafka: connection.kafka,
      topic,
      partitions: 1,
      source: () => queue.shift(),
    });
    const summary = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    assert.deepEqual(
      [summary.received, summary.stored, summary.deadLetters, summary.duplicates],
      [52, 50, 2, 0],
    );
    assert.equal(await rowCount(table), 50);
    const dead = await sql<
      { reason: string; offset: string; partition: number; topic: string; value: string }
    >(
      `SELECT reason, "offset", partition, topic, convert_from(message_value, 'UTF8') AS value
       FROM public.pipeline_dead_letters WHERE target_table = $1 ORDER BY "offset"`,
      [table],
    );
    assert.deepEqual(dead.map((d) => d.reason), ["BAD_JSON", "BAD_EMAIL"]);
    assert.equal(dead[0]!.value, "{not json");
    assert.equal(dead[0]!.offset, "11");
    assert.equal(dead[0]!.topic, topic);
  });
});

Deno.test("db_setup refuses bad table names before any SQL runs", async () => {
  // A PostgreSQL URI that points nowhere: a name check that ran SQL would fail differently.
  for (const bad of ["x; drop table y", '"quoted"', "a".repeat(100)]) {
    const r = await runScript("db_setup.ts", [
      "--table-name",
      bad,
      "--postgres-uri",
      "postgres://u:p@127.0.0.1:1/db",
      "--creds",
      "/nonexistent",
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^error: table name .* is not allowed/);
  }
});

Deno.test("db_setup creates the tables and is harmless when run twice", async () => {
  const creds = await writeStackCreds();
  const table = `e2e_setup_${uniqueSuffix()}`;
  try {
    for (let i = 0; i < 2; i++) {
      const r = await runScript("db_setup.ts", ["--table-name", table, "--creds", creds]);
      assert.equal(r.code, 0, r.stderr);
    }
    const [row] = await sql<{ t: string }>("SELECT to_regclass($1)::text AS t", [
      `public.${table}`,
    ]);
    assert.equal(row!.t, table);
  } finally {
    await dropPipeline(table);
  }
});

Deno.test("a consumer started on tables of an older version stops at once, naming db_setup; after db_setup it stores every ticket", async () => {
  const connection = await stackConnection();
  const creds = await writeStackCreds();
  const schema = `e2e_old_${uniqueSuffix()}`, table = "tickets";
  const q = qualify({ schema, table });
  try {
    await setupDatabase(connection, { schema, table });
    await runProducer({ kafka: connection.kafka, topic: schema, num: 300 });
    // what the version before the write ids made
    await sql(`ALTER TABLE ${q.offsets} DROP COLUMN write_id, DROP COLUMN write_counts`);
    const args = ["--creds", creds, "--schema", schema, "--table-name", table];
    const consumer = [...args, "--topic-name", schema, "--idle-timeout", "2", "--no-metrics-log"];
    const old = await runScript("consumer.ts", consumer);
    assert.equal(old.code, 1, old.stderr);
    assert.match(
      old.stderr,
      new RegExp(
        `^error: the tables of ${schema}\\.tickets are not this version's \\(.*write_id.*\\): ` +
          `run db_setup\\.ts --table-name tickets --schema ${schema} to create or bring them up ` +
          `to date$`,
        "m",
      ),
    );
    assert.equal(await sql(`SELECT 1 FROM ${q.tickets}`).then((r) => r.length), 0);
    const setup = await runScript("db_setup.ts", args);
    assert.equal(setup.code, 0, setup.stderr);
    const run = await runScript("consumer.ts", consumer);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(consumerCounts(run.stdout).stored, 300);
  } finally {
    await sql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await deleteTopics(connection, [schema]).catch(() => {});
  }
});

Deno.test("SIGINT and SIGTERM stop producer and consumer gracefully: batch committed, exit 0, summary", async () => {
  const connection = await stackConnection();
  const creds = await writeStackCreds();
  const id = uniqueSuffix();
  const topic = `e2e_sig_${id}`;
  const table = `e2e_sig_${id}`;
  await setupDatabase(connection, { schema: "public", table });
  try {
    const producer = spawnScript("producer.ts", [
      "--creds",
      creds,
      "--topic-name",
      topic,
      "--continuous",
      "--rate",
      "2000",
    ]);
    // stop it once it has published something (its start takes longer on a loaded machine)
    const admin = createKafka(connection.kafka).admin();
    await admin.connect();
    try {
      await waitFor("the producer's first tickets", async () => {
        const offsets = await admin.fetchTopicOffsets(topic);
        return offsets.some((o) => Number(o.high) > 0);
      });
    } finally {
      await admin.disconnect();
    }
    producer.kill("SIGINT");
    const pOut = await producer.output();
    assert.equal(pOut.code, 0, new TextDecoder().decode(pOut.stderr));
    const sentLine = new TextDecoder().decode(pOut.stdout);
    const sent = Number(/sent (\d+) tickets/.exec(sentLine)?.[1]);
    assert.ok(sent > 0, sentLine + new TextDecoder().decode(pOut.stderr));

    const consumer = spawnScript("consumer.ts", [
      "--creds",
      creds,
      "--topic-name",
      topic,
      "--table-name",
      table,
    ]);
    for (let i = 0; i < 200 && (await rowCount(table)) < sent; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const stopAt = performance.now();
    consumer.kill("SIGTERM");
    const cOut = await consumer.output();
    assert.equal(cOut.code, 0, new TextDecoder().decode(cOut.stderr));
    assert.ok(performance.now() - stopAt < 10_000);
    assert.match(new TextDecoder().decode(cOut.stdout), /^consumed \d+ messages/m);
    assert.equal(await rowCount(table), sent);
  } finally {
    await dropPipeline(table);
    await deleteTopics(connection, [topic]);
  }
});
