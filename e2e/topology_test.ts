/**
 * Topic changes are never silent, and `--idle-timeout` means drained (issue 12). A topic deleted
 * and recreated, records deleted past the stored offset, transaction markers, a compacted log and
 * a member killed while it holds partitions: each case ends with the exact table checked against
 * the topic, or with a loud stop (exit 1 and its message), never with a silent skip.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Connection } from "../lib/config/config.ts";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { LOST_REASON } from "../lib/pipeline/sink.ts";
import { type Admin, createKafka } from "../lib/kafka/kafka.ts";
import type { MetricsRecord } from "../lib/observe/metrics.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import {
  collect,
  consumerArgs as consumerArgsOf,
  consumerCounts,
  deleteTopics,
  type PipelineCase,
  runScript,
  type ScriptResult,
  sh,
  spawnScript,
  sql,
  stackInfo,
  waitFor,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";
import type { Ticket } from "../lib/model/columns.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import { verifyPipeline } from "../lib/commands/verify.ts";

interface Case extends PipelineCase {
  creds: string;
  group: string;
  /** One generator per case: tickets produced in several rounds never share a seat. */
  generator: TicketGenerator;
}

function withCase(prefix: string, fn: (c: Case) => Promise<void>): Promise<void> {
  return withPipeline(prefix, async (p) => {
    await fn({
      ...p,
      creds: await writeStackCreds(),
      group: defaultGroupId("public", p.table),
      generator: new TicketGenerator(),
    });
  });
}

function consumerArgs(c: Case, ...extra: string[]): string[] {
  return consumerArgsOf(c, ...extra);
}

/** Runs consumer.ts to its end. */
function consume(c: Case, ...extra: string[]): Promise<ScriptResult> {
  return runScript("consumer.ts", consumerArgs(c, ...extra));
}

/** Produces `num` new tickets of the case's generator; returns them in the order sent. */
async function produce(c: Case, num: number, partitions = 3): Promise<Ticket[]> {
  const tickets = Array.from({ length: num }, () => c.generator.next());
  const queue = tickets.map((t) => ({ key: t.ticket_id, value: JSON.stringify(t) }));
  const sent = await runProducer({
    kafka: c.connection.kafka,
    topic: c.topic,
    partitions,
    source: () => queue.shift(),
  });
  assert.equal(sent.sent, num);
  return tickets;
}

async function withAdmin<T>(connection: Connection, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = createKafka(connection.kafka, { clientId: "tickets-topology-test" }).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

interface Bounds {
  partition: number;
  low: number;
  high: number;
}

/** Each partition's log start and high watermark, by partition. */
function logBounds(c: Case): Promise<Bounds[]> {
  return withAdmin(c.connection, async (admin) =>
    (await admin.fetchTopicOffsets(c.topic))
      .map((o) => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) }))
      .sort((a, b) => a.partition - b.partition));
}

/** The group's stored offsets of the case's topic, by partition. */
async function storedOffsets(c: Case): Promise<Map<number, number>> {
  const rows = await sql<{ partition: number; next: number }>(
    `SELECT partition, next_offset::int AS next FROM ${c.q.offsets}
     WHERE group_id = $1 AND topic = $2`,
    [c.group, c.topic],
  );
  return new Map(rows.map((r) => [r.partition, r.next]));
}

/** Every partition's stored offset is its high watermark. */
async function assertDrained(c: Case): Promise<void> {
  const stored = await storedOffsets(c);
  const bounds = await logBounds(c);
  assert.deepEqual(
    bounds.map((b) => [b.partition, stored.get(b.partition)]),
    bounds.map((b) => [b.partition, b.high]),
    "stored offsets are the high watermarks",
  );
}

async function tableIds(c: Case): Promise<string[]> {
  const rows = await sql<{ ticket_id: string }>(`SELECT ticket_id FROM ${c.q.tickets}`);
  return rows.map((r) => r.ticket_id).sort();
}

const ids = (tickets: Ticket[]) => tickets.map((t) => t.ticket_id).sort();

/** Deletes the topic and creates it again, empty, with `partitions` partitions. */
async function recreateTopic(c: Case, partitions: number): Promise<void> {
  await deleteTopics(c.connection, [c.topic]);
  await waitFor("the topic to be created again", () =>
    withAdmin(c.connection, async (admin) => {
      if ((await admin.listTopics()).includes(c.topic)) return false;
      return await admin.createTopics({
        topics: [{ topic: c.topic, numPartitions: partitions }],
        waitForLeaders: true,
      });
    }), 30_000);
  await waitFor(
    "the new topic's offsets",
    async () => (await logBounds(c)).length === partitions,
    30_000,
  );
}

/** A consumer summary line's counts. */
function summaryOf(run: ScriptResult | string) {
  return consumerCounts(typeof run === "string" ? run : run.stdout);
}

/**
 * The table against the topic (verify): no message of the topic missing or different, no dead
 * letter missing, and the only rows the topic does not hold are `gone` (tickets stored from a
 * topic that was deleted, or from records deleted since). `moved`: tickets stored from a copy
 * that compaction removed since; verify finds no message at their stored offset.
 */
async function assertExact(c: Case, gone: string[] = [], moved: string[] = []): Promise<void> {
  const report = await verifyPipeline({
    connection: c.connection,
    topic: c.topic,
    table: c.table,
    readTimeoutSeconds: 60,
  });
  assert.deepEqual(
    {
      missing: report.missing,
      mismatched: report.mismatched.sort(),
      deadLettersMissing: report.deadLettersMissing,
      extra: report.extra.length,
    },
    { missing: [], mismatched: [...moved].sort(), deadLettersMissing: [], extra: gone.length },
  );
  assert.deepEqual(report.extra.sort(), [...gone].sort(), "rows the topic does not hold");
  assert.equal(report.rows, report.tickets + gone.length);
}

/** The stop after a recreated topic: exit 1, nothing stored, the message names the way out. */
async function assertLoudStop(c: Case, run: ScriptResult, before: Map<number, number>) {
  assert.equal(run.code, 1, `the consumer did not stop:\n${run.stdout}\n${run.stderr}`);
  assert.doesNotMatch(run.stdout, /^consumed /m, "a stopped run prints no summary");
  assert.match(run.stderr, /--reset-offsets earliest/);
  assert.deepEqual(await storedOffsets(c), before, "a stopped run moves no stored offset");
  const bounds = await logBounds(c);
  const end = new RegExp(
    `^error: topic "${c.topic}" partition (\\d+): group ${c.group} stored offset (\\d+), but ` +
      `the log ends at (\\d+)`,
    "m",
  ).exec(run.stderr);
  const other = new RegExp(
    `^error: topic "${c.topic}" partition (\\d+): the message at offset (\\d+) is not one ` +
      `group ${c.group} stored`,
    "m",
  ).exec(run.stderr);
  assert.ok(end || other, run.stderr);
  if (end) {
    const [partition, storedAt, high] = end.slice(1).map(Number) as [number, number, number];
    assert.equal(storedAt, before.get(partition));
    assert.equal(high, bounds[partition]!.high);
    assert.ok(storedAt > high);
  } else {
    const [partition, offset] = other!.slice(1).map(Number) as [number, number];
    assert.equal(offset, before.get(partition)! - 1, "the message checked is the last one stored");
  }
}

Deno.test("consumer stops loudly when the topic was recreated with fewer messages; --reset-offsets earliest then stores them exactly", async () => {
  await withCase("topo_fewer", async (c) => {
    const old = await produce(c, 1000);
    const first = await consume(c, "--idle-timeout", "1");
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(await tableIds(c), ids(old));
    await assertDrained(c);
    const before = await storedOffsets(c);

    await recreateTopic(c, 3);
    const fresh = await produce(c, 500);
    assert.ok((await logBounds(c)).every((b) => b.high < before.get(b.partition)!));
    const stopped = await consume(c, "--idle-timeout", "1");
    await assertLoudStop(c, stopped, before);
    assert.deepEqual(await tableIds(c), ids(old), "the stopped run stored nothing");

    const reset = await consume(c, "--reset-offsets", "earliest", "--idle-timeout", "1");
    assert.equal(reset.code, 0, reset.stderr);
    for (const [partition, storedAt] of before) {
      assert.match(
        reset.stderr,
        new RegExp(
          `partition ${partition} of group ${c.group}: stored offset ${storedAt} -> 0$`,
          "m",
        ),
      );
    }
    const s = summaryOf(reset);
    assert.deepEqual([s.received, s.stored, s.duplicates, s.deadLetters], [500, 500, 0, 0], s.line);
    assert.deepEqual(await tableIds(c), ids([...old, ...fresh]));
    await assertDrained(c);
    await assertExact(c, ids(old));
  });
});

Deno.test("consumer stops loudly when the topic was recreated and refilled past the stored offset (issue 12's repro); --reset-offsets earliest then stores all", async () => {
  await withCase("topo_more", async (c) => {
    const old = await produce(c, 1000);
    const first = await consume(c, "--idle-timeout", "1");
    assert.equal(first.code, 0, first.stderr);
    const before = await storedOffsets(c);

    await recreateTopic(c, 3);
    const fresh = await produce(c, 1500);
    // the new log reaches past every stored offset: nothing but the messages themselves tells
    // that the offsets below it are not the ones this group stored
    assert.ok((await logBounds(c)).every((b) => b.high > before.get(b.partition)!));
    const stopped = await consume(c, "--idle-timeout", "1");
    await assertLoudStop(c, stopped, before);
    assert.deepEqual(await tableIds(c), ids(old), "the stopped run stored nothing");

    const reset = await consume(c, "--reset-offsets", "earliest", "--idle-timeout", "1");
    assert.equal(reset.code, 0, reset.stderr);
    const s = summaryOf(reset);
    assert.deepEqual(
      [s.received, s.stored, s.duplicates, s.deadLetters],
      [1500, 1500, 0, 0],
      s.line,
    );
    assert.deepEqual(await tableIds(c), ids([...old, ...fresh]), "all 2500 tickets stored");
    await assertDrained(c);
    await assertExact(c, ids(old));
  });
});

// A partition is checked when it is assigned, not only when a fetch brings a message.
Deno.test("consumer stops loudly when the topic was recreated empty", async () => {
  await withCase("topo_empty", async (c) => {
    await produce(c, 300);
    const first = await consume(c, "--idle-timeout", "1");
    assert.equal(first.code, 0, first.stderr);
    const before = await storedOffsets(c);
    await recreateTopic(c, 3);
    const stopped = await consume(c, "--idle-timeout", "1");
    await assertLoudStop(c, stopped, before);
  });
});

// The skip is recorded as a SKIPPED marker on the last skipped offset, which the position check
// then finds.
Deno.test(
  "--reset-offsets latest skips the backlog, says so, and the next messages are stored exactly",
  async () => {
    await withCase("topo_latest", async (c) => {
      const backlog = await produce(c, 600);
      const bounds = await logBounds(c);
      const skip = await consume(c, "--reset-offsets", "latest", "--idle-timeout", "1");
      assert.equal(skip.code, 0, skip.stderr);
      for (const b of bounds) {
        assert.match(
          skip.stderr,
          new RegExp(
            `^--reset-offsets latest: topic "${c.topic}" partition ${b.partition} of group ` +
              `${c.group}: stored offset \\(none\\) -> ${b.high}$`,
            "m",
          ),
        );
      }
      assert.equal(summaryOf(skip).received, 0);
      assert.deepEqual(await tableIds(c), []);
      await assertDrained(c);

      const later = await produce(c, 200);
      const next = await consume(c, "--idle-timeout", "1");
      assert.equal(next.code, 0, next.stderr);
      assert.equal(summaryOf(next).received, 200);
      assert.deepEqual(await tableIds(c), ids(later));
      await assertDrained(c);
      const report = await verifyPipeline({
        connection: c.connection,
        topic: c.topic,
        table: c.table,
      });
      assert.deepEqual(report.missing.sort(), ids(backlog), "only the skipped backlog is missing");
      assert.deepEqual([report.extra, report.mismatched], [[], []]);
    });
  },
);

Deno.test("records deleted past the stored offset: a warning with the count, a LOST dead letter, the rest stored exactly", async () => {
  await withCase("topo_deleted", async (c) => {
    const tickets = await produce(c, 1000, 1);
    const first = await consume(c, "--max-messages", "300");
    assert.equal(first.code, 0, first.stderr);
    assert.equal(summaryOf(first).received, 300);
    assert.deepEqual(await storedOffsets(c), new Map([[0, 300]]));
    await withAdmin(c.connection, async (admin) => {
      await admin.fetchTopicMetadata({ topics: [c.topic] });
      await admin.deleteTopicRecords({
        topic: c.topic,
        partitions: [{ partition: 0, offset: "600" }],
      });
    });
    assert.deepEqual(await logBounds(c), [{ partition: 0, low: 600, high: 1000 }]);

    const metricsLog = join(await Deno.makeTempDir({ prefix: "tickets-topology-" }), "m.jsonl");
    const run = await runScript("consumer.ts", [
      // --max-messages 400 is all that is left: a LOST write must not count as a message
      ...consumerArgs(c, "--idle-timeout", "1", "--max-messages", "400")
        .filter((a) => a !== "--no-metrics-log"),
      "--metrics-log",
      metricsLog,
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stderr,
      new RegExp(
        `^warn: topic "${c.topic}" partition 0: offsets 300\\.\\.599 \\(300 messages\\) were ` +
          `deleted from the log \\(retention\\) before group ${c.group} read them; going on at 600$`,
        "m",
      ),
    );
    const s = summaryOf(run);
    assert.match(s.line, /, lost before read 300$/);
    assert.deepEqual([s.received, s.stored, s.deadLetters, s.lost], [400, 400, 0, 300], s.line);
    const end = Deno.readTextFileSync(metricsLog).trim().split("\n")
      .map((l) => JSON.parse(l) as MetricsRecord).find((r) => r.event === "end");
    assert.equal(end?.counts.lost, 300, "the metrics record counts the loss");
    assert.equal(end?.outcome, "ok");

    const letters = await sql<
      { offset: string; reason: string; value: Uint8Array | null; detail: string }
    >(
      `SELECT "offset"::text AS offset, reason, message_value AS value, detail
       FROM ${c.q.deadLetters} WHERE group_id = $1 AND topic = $2`,
      [c.group, c.topic],
    );
    assert.deepEqual(letters, [{
      offset: "300",
      reason: LOST_REASON,
      value: null,
      detail: `offsets 300..599 (300 messages) were deleted from the log (retention) before ` +
        `group ${c.group} read them`,
    }]);
    assert.deepEqual(
      await tableIds(c),
      ids([...tickets.slice(0, 300), ...tickets.slice(600)]),
      "300 read before the deletion + the 400 the log still holds",
    );
    await assertDrained(c);
    // exact for what the log still holds; the first 300 rows came from records deleted since
    await assertExact(c, ids(tickets.slice(0, 300)));
  });
});

/** Key, partition and offset of each message kcat (an independent client) reads, committed only. */
async function kcatCommitted(c: Case): Promise<string[]> {
  const out = await sh(
    `kcat -b ${stackInfo().kafka.plaintext} -C -t ${c.topic} -o beginning -e -q ` +
      `-X isolation.level=read_committed -f '%k %p %o\\n'`,
  );
  return out.trim().split("\n").filter(Boolean).sort();
}

/** The table's rows as `ticket_id partition offset`. */
async function tablePositions(c: Case): Promise<string[]> {
  const rows = await sql<{ line: string }>(
    `SELECT ticket_id || ' ' || kafka_partition || ' ' || kafka_offset AS line FROM ${c.q.tickets}`,
  );
  return rows.map((r) => r.line).sort();
}

/** A transactional producer of the case's tickets; `send` runs one transaction. */
async function transactionalProducer(c: Case) {
  const producer = createKafka(c.connection.kafka, { clientId: "tickets-topology-txn" }).producer({
    transactionalId: `txn-${c.topic}`,
    maxInFlightRequests: 1,
    idempotent: true,
  });
  await producer.connect();
  return {
    /** Sends `count` new tickets (to `partition`, or by key) in one transaction. */
    async send(outcome: "commit" | "abort", count: number, partition?: number): Promise<Ticket[]> {
      const tickets = Array.from({ length: count }, () => c.generator.next());
      const transaction = await producer.transaction();
      await transaction.send({
        topic: c.topic,
        messages: tickets.map((t) => ({ key: t.ticket_id, value: JSON.stringify(t), partition })),
      });
      await (outcome === "commit" ? transaction.commit() : transaction.abort());
      return tickets;
    },
    disconnect: () => producer.disconnect(),
  };
}

Deno.test("a transactional producer's markers and aborted transactions: committed tickets stored exactly, stored offsets at the high watermarks", async () => {
  await withCase("topo_txn", async (c) => {
    await withAdmin(
      c.connection,
      (admin) =>
        admin.createTopics({
          topics: [{ topic: c.topic, numPartitions: 3 }],
          waitForLeaders: true,
        }),
    );
    const txn = await transactionalProducer(c);
    try {
      const committed = [
        ...await txn.send("commit", 100),
        ...await txn.send("commit", 100),
      ];
      await txn.send("abort", 100);
      committed.push(...await txn.send("commit", 100));
      const consumer = collect(
        spawnScript(
          "consumer.ts",
          consumerArgs(c, "--idle-timeout", "3", "--session-timeout", "6"),
        ),
      );
      await waitFor(
        "the committed tickets",
        async () => (await tableIds(c)).length === 300,
        30_000,
      );
      // While the consumer waits at the end of the log, a transaction is aborted: its fetch holds
      // nothing but aborted messages and the abort marker, and the stored offsets must follow.
      await txn.send("abort", 100);
      const status = await consumer.done;
      assert.equal(status.code, 0, consumer.stderr());
      const s = summaryOf(consumer.stdout());
      assert.deepEqual(
        [s.received, s.stored, s.duplicates, s.deadLetters],
        [300, 300, 0, 0],
        s.line,
      );
      assert.deepEqual(await tableIds(c), ids(committed), "committed tickets, none aborted");
      assert.deepEqual(await tablePositions(c), await kcatCommitted(c), "as kcat reads the topic");
      // 500 messages and a marker per transaction and partition
      assert.ok((await logBounds(c)).reduce((n, b) => n + b.high, 0) > 500);
      await assertDrained(c);
    } finally {
      await txn.disconnect();
    }
  });
});

// Positions are loaded on assignment, so a partition whose fetches are all filtered still moves.
Deno.test(
  "a partition holding only an aborted transaction counts as drained once its offsets are covered",
  async () => {
    await withCase("topo_txn_only", async (c) => {
      await withAdmin(
        c.connection,
        (admin) =>
          admin.createTopics({
            topics: [{ topic: c.topic, numPartitions: 2 }],
            waitForLeaders: true,
          }),
      );
      const txn = await transactionalProducer(c);
      let committed: Ticket[];
      try {
        committed = await txn.send("commit", 50, 0);
        await txn.send("abort", 50, 1);
      } finally {
        await txn.disconnect();
      }
      // the abort marker's high watermark shows a moment after abortTransaction() returns
      await waitFor(
        "both high watermarks at 51 (50 messages and a marker)",
        async () => (await logBounds(c)).map((b) => b.high).join() === "51,51",
        10_000,
      );
      const run = await consume(c, "--idle-timeout", "1", "--session-timeout", "6");
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(await tableIds(c), ids(committed));
      await assertDrained(c);
    });
  },
);

Deno.test("a compacted topic: the offsets compaction emptied are covered, exact table, stored offsets at the high watermark", async () => {
  await withCase("topo_compact", async (c) => {
    await withAdmin(c.connection, (admin) =>
      admin.createTopics({
        topics: [{
          topic: c.topic,
          numPartitions: 1,
          configEntries: [
            { name: "cleanup.policy", value: "compact" },
            { name: "segment.ms", value: "1000" },
            { name: "min.cleanable.dirty.ratio", value: "0.01" },
            { name: "delete.retention.ms", value: "100" },
            { name: "min.compaction.lag.ms", value: "0" },
          ],
        }],
        waitForLeaders: true,
      }));
    // some tickets are sent twice with the same content: compaction drops the earlier copy,
    // leaving offsets that hold no message in the middle of the log
    const tickets = Array.from({ length: 200 }, () => c.generator.next());
    const sent = [
      ...tickets.slice(0, 100),
      ...tickets.slice(10, 40),
      ...tickets.slice(100),
      ...tickets.slice(150, 170),
    ];
    const send = async (list: Ticket[]) => {
      const queue = list.map((t) => ({ key: t.ticket_id, value: JSON.stringify(t) }));
      await runProducer({ kafka: c.connection.kafka, topic: c.topic, source: () => queue.shift() });
    };
    await send(sent);
    // 30 read before compaction: the last one stored (offset 29, ticket 29) is a first copy,
    // which compaction removes, so the next run finds no message before its stored offset
    const early = await consume(c, "--max-messages", "30");
    assert.equal(early.code, 0, early.stderr);
    assert.deepEqual(await storedOffsets(c), new Map([[0, 30]]));
    // a message after segment.ms rolls the segment, and the cleaner may compact the closed one
    await new Promise((r) => setTimeout(r, 1_500));
    const last = c.generator.next();
    await send([last]);
    const produced = sent.length + 1;
    assert.deepEqual(await logBounds(c), [{ partition: 0, low: 0, high: produced }]);
    let readable: string[] = [];
    await waitFor("the log cleaner to compact the topic", async () => {
      readable = await kcatCommitted(c);
      return readable.length < produced;
    }, 40_000);
    assert.equal(
      readable.length,
      tickets.length + 1,
      "compaction kept the last copy of each ticket",
    );
    assert.ok(!readable.some((line) => line.endsWith(" 0 29")), "offset 29 was compacted away");

    const run = await consume(c, "--idle-timeout", "1");
    assert.equal(run.code, 0, run.stderr);
    const s = summaryOf(run);
    // from offset 30 on: tickets 40..199 once, the second copies of 10..39 (10..29 already
    // stored, from their first copies) and the last ticket
    assert.deepEqual(
      [s.received, s.stored, s.duplicates, s.deadLetters],
      [160 + 30 + 1, 160 + 10 + 1, 20, 0],
      s.line,
    );
    assert.deepEqual(await tableIds(c), ids([...tickets, last]));
    await assertDrained(c);
    await assertExact(c, [], ids(tickets.slice(10, 30)));
  });
});

// Scaling out: more partitions for a topic in use. The consumer finds them by its metadata
// refresh (KafkaJS's default age is 5 minutes) and the group rebalances to take them.
Deno.test("partitions added to the topic while the consumer runs: it takes them within a minute, and --idle-timeout waits for them; exact", async () => {
  await withCase("topo_grow", async (c) => {
    const before = await produce(c, 1_000, 2);
    const rows = async () => (await tableIds(c)).length;
    const run = collect(spawnScript("consumer.ts", consumerArgs(c, "--idle-timeout", "20")));
    await waitFor("the first 1,000 stored", async () => (await rows()) === 1_000, 30_000);
    await withAdmin(
      c.connection,
      (admin) => admin.createPartitions({ topicPartitions: [{ topic: c.topic, count: 4 }] }),
    );
    // a new producer run spreads its tickets over the four partitions
    const after = await produce(c, 1_000, 4);
    const bounds = await logBounds(c);
    assert.equal(bounds.length, 4);
    assert.ok(
      bounds.every((b) => b.high > 0),
      `every partition holds tickets: ${JSON.stringify(bounds)}`,
    );
    await waitFor(
      "the new partitions' tickets stored",
      async () => (await rows()) === 2_000,
      60_000,
    )
      .catch((error) => {
        throw new Error(`${error.message}\n${run.stderr()}`);
      });
    const status = await run.done;
    assert.equal(status.code, 0, run.stderr());
    assert.deepEqual(await tableIds(c), ids([...before, ...after]));
    await assertDrained(c);
    await assertExact(c);
    const s = summaryOf(run.stdout());
    assert.deepEqual([s.received, s.stored, s.fenced], [2_000, 2_000, 0], s.line);
  });
});

Deno.test("--idle-timeout means drained: a member idle while a killed member still holds partitions waits, takes them over, and stores all", async () => {
  await withCase("topo_drained", async (c) => {
    const before = await produce(c, 3_000);
    const rows = async () => (await tableIds(c)).length;
    // A is idle ~3.5 s after it stored its share; B's partitions move ~15 s after B died: A sees
    // them undrained, even on a loaded machine where producing the second 3,000 takes seconds
    const memberB = spawnScript("consumer.ts", consumerArgs(c, "--session-timeout", "15"));
    const b = collect(memberB);
    try {
      await waitFor("member B to store the backlog", async () => (await rows()) === 3_000, 30_000);
      const a = collect(
        spawnScript(
          "consumer.ts",
          consumerArgs(c, "--idle-timeout", "3", "--session-timeout", "6"),
        ),
      );
      await waitFor(
        "member A to join: two members share the partitions",
        () =>
          withAdmin(c.connection, async (admin) => {
            const [group] = (await admin.describeGroups([c.group])).groups;
            return group?.state === "Stable" && group.members.length === 2;
          }),
        30_000,
      );
      // B dies holding its partitions; tickets keep coming, to B's partitions too. A stores its
      // own share and is idle long before B's session ends: it must not call that drained.
      memberB.kill("SIGKILL");
      const after = await produce(c, 3_000);
      const status = await a.done;
      assert.equal(status.code, 0, a.stderr());
      assert.deepEqual(await tableIds(c), ids([...before, ...after]));
      await assertDrained(c);
      await assertExact(c);
      const s = summaryOf(a.stdout());
      assert.deepEqual(
        [s.received, s.stored, s.duplicates, s.deadLetters],
        [3_000, 3_000, 0, 0],
        s.line,
      );
      // it did wait: idle with B's partitions behind, before B's session ended
      assert.match(
        a.stderr(),
        // B held one or two of the three partitions
        /^idle, but the topic is not drained: partition \d+ \(at \d+ of \d+\)(, \d+ \(at \d+ of \d+\))?; waiting$/m,
      );
    } finally {
      try {
        memberB.kill("SIGKILL");
      } catch {
        // already dead
      }
      await b.done;
    }
  });
});
