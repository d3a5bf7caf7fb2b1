/**
 * The fault suite: outages, rebalances, frozen consumers, killed connections. Each case ends by
 * checking the exact final table against the topic (count, no duplicate, none missing).
 */
import assert from "node:assert/strict";
import type { Connection } from "../lib/config.ts";
import { setupDatabase } from "../lib/db_setup.ts";
import { runProducer } from "../lib/producer.ts";
import { qualify } from "../lib/schema.ts";
import {
  collect,
  deleteTopics,
  dropPipeline,
  spawnScript,
  sql,
  stack,
  stackConnection,
  uniqueSuffix,
  waitFor,
  writeStackCreds,
} from "../lib/testing.ts";
import { verifyPipeline } from "../lib/verify.ts";

interface Case {
  connection: Connection;
  creds: string;
  topic: string;
  table: string;
  consumerArgs: (...extra: string[]) => string[];
}

async function withCase(name: string, fn: (c: Case) => Promise<void>): Promise<void> {
  const connection = await stackConnection();
  const creds = await writeStackCreds();
  const id = uniqueSuffix();
  const topic = `fault_${name}_${id}`;
  const table = `fault_${name}_${id}`;
  await setupDatabase(connection, { schema: "public", table });
  const consumerArgs = (...extra: string[]) => [
    "--creds",
    creds,
    "--topic-name",
    topic,
    "--table-name",
    table,
    "--no-metrics-log",
    ...extra,
  ];
  try {
    await fn({ connection, creds, topic, table, consumerArgs });
  } finally {
    // whatever happened, the stack is whole again for the next case
    await stack("up", "postgres");
    await stack("up", "kafka");
    await dropPipeline(table);
    await deleteTopics(connection, [topic]).catch(() => {});
  }
}

async function rowCount(table: string): Promise<{ n: number; distinct: number }> {
  const [row] = await sql<{ n: string; d: string }>(
    `SELECT count(*) AS n, count(DISTINCT ticket_id) AS d FROM ${
      qualify({ schema: "public", table }).tickets
    }`,
  );
  return { n: Number(row!.n), distinct: Number(row!.d) };
}

/** The table holds exactly the topic's tickets: verify passes and there is no duplicate. */
async function assertExact(c: Case, expected?: number): Promise<void> {
  const report = await verifyPipeline({ connection: c.connection, topic: c.topic, table: c.table });
  const { n, distinct } = await rowCount(c.table);
  assert.equal(n, distinct, "duplicate ticket_id in the table");
  assert.deepEqual(
    {
      missing: report.missing.length,
      extra: report.extra.length,
      mismatched: report.mismatched.length,
    },
    { missing: 0, extra: 0, mismatched: 0 },
  );
  assert.equal(n, report.tickets);
  if (expected !== undefined) assert.equal(n, expected);
}

Deno.test("consumer rides out a PostgreSQL restart mid-stream: retries, resumes, exact table", async () => {
  await withCase("pgrestart", async (c) => {
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 60_000 });
    const consumer = collect(
      spawnScript("consumer.ts", c.consumerArgs("--batch-size", "1000", "--idle-timeout", "5")),
    );
    await waitFor("first rows", async () => (await rowCount(c.table)).n >= 3_000);
    await stack("down", "postgres");
    await new Promise((r) => setTimeout(r, 3_000));
    await stack("up", "postgres");
    const status = await consumer.done;
    assert.equal(status.code, 0, consumer.stderr());
    assert.match(consumer.stderr(), /database write failed \(attempt 1\)/);
    // logged once per attempt, not per message
    assert.ok(consumer.stderr().split("\n").filter((l) => l.includes("attempt")).length < 40);
    await assertExact(c, 60_000);
  });
});

Deno.test("consumer gives up after --db-retry seconds with a clear error when PostgreSQL stays down", async () => {
  await withCase("pgdown", async (c) => {
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 2_000 });
    await stack("down", "postgres");
    try {
      // connect succeeds only while the database is up, so take it down after start-up
      const started = performance.now();
      const consumer = collect(
        spawnScript("consumer.ts", c.consumerArgs("--db-retry", "3", "--connect-timeout", "3")),
      );
      const status = await consumer.done;
      assert.equal(status.code, 1);
      assert.match(
        consumer.stderr(),
        /^error: cannot reach PostgreSQL at 127\.0\.0\.1:\d+: connection refused/m,
      );
      assert.ok(performance.now() - started < 15_000);
    } finally {
      await stack("up", "postgres");
    }
  });
});

Deno.test("connections killed by pg_terminate_backend are replaced; exact table", async () => {
  await withCase("terminate", async (c) => {
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 60_000 });
    const consumer = collect(
      spawnScript("consumer.ts", c.consumerArgs("--batch-size", "500", "--idle-timeout", "5")),
    );
    let killed = 0;
    for (let round = 0; round < 4; round++) {
      await waitFor("rows", async () => (await rowCount(c.table)).n >= 5_000 * (round + 1), 60_000)
        .catch(() => {});
      const rows = await sql<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
         WHERE application_name = $1 AND pid <> pg_backend_pid()`,
        [`tickets-consumer tickets-sink-public-${c.table}`],
      );
      killed += rows[0]!.n;
    }
    const status = await consumer.done;
    assert.equal(status.code, 0, consumer.stderr());
    assert.ok(killed > 0, "no connection was terminated");
    await assertExact(c, 60_000);
  });
});

Deno.test("broker restarted mid-stream: producer retries and reports, consumer resumes; exact table", async () => {
  await withCase("kafkarestart", async (c) => {
    const producer = collect(
      spawnScript("producer.ts", [
        "--creds",
        c.creds,
        "--topic-name",
        c.topic,
        "--num",
        "40000",
        "--rate",
        "5000",
        "--no-metrics-log",
      ]),
    );
    await new Promise((r) => setTimeout(r, 3_000)); // the producer creates the topic
    const consumer = collect(spawnScript("consumer.ts", c.consumerArgs("--idle-timeout", "15")));
    await waitFor("first rows", async () => (await rowCount(c.table)).n >= 5_000);
    await stack("down", "kafka");
    await new Promise((r) => setTimeout(r, 2_000));
    await stack("up", "kafka");
    const pStatus = await producer.done;
    const summary = /sent (\d+) tickets/.exec(producer.stdout() + producer.stderr());
    assert.ok(summary, producer.stderr());
    if (pStatus.code !== 0) {
      // never a silent loss: a non-zero exit names what was not sent
      assert.match(producer.stderr(), /tickets were not sent/);
    } else assert.equal(Number(summary[1]), 40_000);
    const cStatus = await consumer.done;
    assert.equal(cStatus.code, 0, consumer.stderr());
    await assertExact(c);
    assert.ok((await rowCount(c.table)).n >= Number(summary[1]));
  });
});

Deno.test("three consumers in one group, started and stopped while data flows: exact table", async () => {
  await withCase("rebalance", async (c) => {
    const producer = collect(
      spawnScript("producer.ts", [
        "--creds",
        c.creds,
        "--topic-name",
        c.topic,
        "--num",
        "60000",
        "--rate",
        "8000",
        "--no-metrics-log",
      ]),
    );
    await waitFor("topic", async () => {
      const admin = (await import("../lib/kafka.ts")).createKafka(c.connection.kafka).admin();
      await admin.connect();
      try {
        return (await admin.listTopics()).includes(c.topic);
      } finally {
        await admin.disconnect();
      }
    });
    const args = c.consumerArgs(
      "--idle-timeout",
      "6",
      "--session-timeout",
      "10",
      "--batch-size",
      "500",
    );
    const a = collect(spawnScript("consumer.ts", args));
    await new Promise((r) => setTimeout(r, 1_500));
    const b = collect(spawnScript("consumer.ts", args));
    await new Promise((r) => setTimeout(r, 1_500));
    const third = spawnScript("consumer.ts", args);
    const d = collect(third);
    await new Promise((r) => setTimeout(r, 4_000)); // joined the group and got partitions
    third.kill("SIGTERM");
    assert.equal((await d.done).code, 0, d.stderr());
    const e = collect(spawnScript("consumer.ts", args));
    assert.equal((await producer.done).code, 0, producer.stderr());
    for (const x of [a, b, e]) assert.equal((await x.done).code, 0, x.stderr());
    await assertExact(c, 60_000);
  });
});

Deno.test("a consumer frozen (SIGSTOP) past its session timeout writes nothing after it resumes", async () => {
  await withCase("frozen", async (c) => {
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 40_000 });
    const args = c.consumerArgs(
      "--session-timeout",
      "6",
      "--batch-size",
      "200",
      "--fetch-max-bytes",
      "65536",
    );
    const frozenChild = spawnScript("consumer.ts", args);
    const frozen = collect(frozenChild);
    await waitFor("first rows", async () => (await rowCount(c.table)).n >= 2_000);
    frozenChild.kill("SIGSTOP");
    const other = collect(spawnScript("consumer.ts", [...args, "--idle-timeout", "4"]));
    assert.equal((await other.done).code, 0, other.stderr());
    assert.equal((await rowCount(c.table)).n, 40_000);
    const [before] = await sql<{ t: Date }>(`SELECT now() AS t`);
    frozenChild.kill("SIGCONT");
    await new Promise((r) => setTimeout(r, 5_000));
    frozenChild.kill("SIGTERM");
    await frozen.done;
    const q = qualify({ schema: "public", table: c.table });
    const [late] = await sql<{ n: string }>(
      `SELECT count(*) AS n FROM ${q.tickets} WHERE stored_at >= $1`,
      [before!.t],
    );
    assert.equal(Number(late!.n), 0, "the resumed consumer stored rows");
    const offsets = await sql<{ partition: number; next_offset: string }>(
      `SELECT partition, next_offset FROM ${q.offsets} WHERE topic = $1 ORDER BY partition`,
      [c.topic],
    );
    const total = offsets.reduce((sum, o) => sum + Number(o.next_offset), 0);
    assert.equal(total, 40_000, "stored offsets moved backwards");
    await assertExact(c, 40_000);
  });
});
