/**
 * End-to-end: the consumer copies PostgreSQL's stored offsets to its Kafka consumer group, so
 * Kafka's own ConsumerGroupCommand (from the stack's jars) sees the group's lag; the copy is
 * never ahead of PostgreSQL, even after `--reset-offsets earliest`.
 */
import assert from "node:assert/strict";
import { createKafka } from "../lib/kafka/kafka.ts";
import { defaultGroupId, runConsumer } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import type { Connection } from "../lib/config/config.ts";
import { describeGroup, storedGroupOffsets, withPipeline } from "../testing/testing.ts";

/**
 * Offsets that hold no message at the log's end: a committed transaction on partition 1 (its
 * marker ends the log) and an aborted one on partition 2 (a fetch the consumer is never handed).
 */
async function transactions(connection: Connection, topic: string): Promise<number> {
  const generator = new TicketGenerator({ seed: 15 });
  const producer = createKafka(connection.kafka, { clientId: "tickets-lag-txn" }).producer({
    transactionalId: `txn-${topic}`,
    maxInFlightRequests: 1,
    idempotent: true,
  });
  await producer.connect();
  try {
    for (const [outcome, partition] of [["commit", 1], ["abort", 2]] as const) {
      const transaction = await producer.transaction();
      await transaction.send({
        topic,
        messages: Array.from({ length: 20 }, () => {
          const t = generator.next();
          return { key: t.ticket_id, value: JSON.stringify(t), partition };
        }),
      });
      await (outcome === "commit" ? transaction.commit() : transaction.abort());
    }
  } finally {
    await producer.disconnect();
  }
  return 20; // committed tickets
}

Deno.test("consumer commits its stored offsets to the Kafka group: ConsumerGroupCommand shows lag 0 on every partition after a drain, at PostgreSQL's offsets, and never more than them after --reset-offsets earliest", async () => {
  await withPipeline("lag", async ({ connection, topic, table, q }) => {
    const groupId = defaultGroupId("public", table);
    await runProducer({ kafka: connection.kafka, topic, num: 1500, partitions: 3 });
    const committed = await transactions(connection, topic);

    const first = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 2 });
    assert.equal(first.received, 1500 + committed);
    const stored = await storedGroupOffsets(q, groupId, topic);
    const drained = await describeGroup(groupId, topic);
    assert.deepEqual(drained.map((r) => r.partition), [0, 1, 2]);
    for (const row of drained) {
      assert.equal(row.lag, "0", `partition ${row.partition}: ${JSON.stringify(row, replacer)}`);
      assert.equal(row.current, stored.get(row.partition), `partition ${row.partition}`);
      assert.equal(row.current, row.logEnd, `partition ${row.partition}`);
    }
    // the log ends in offsets that hold no message on partitions 1 and 2: they were covered
    assert.ok(drained[2]!.logEnd > 0n);

    // --reset-offsets earliest moves PostgreSQL's offsets back to the log's start; Kafka's copy
    // must follow at once, not stay at the old end
    const rerun = await runConsumer({
      connection,
      topic,
      table,
      resetOffsets: "earliest",
      maxMessages: 10,
    });
    assert.equal(rerun.received, 10);
    const reset = await storedGroupOffsets(q, groupId, topic);
    const after = await describeGroup(groupId, topic);
    assert.deepEqual(after.map((r) => r.partition), [0, 1, 2]);
    for (const row of after) {
      assert.equal(row.current, reset.get(row.partition), `partition ${row.partition}`);
    }
    assert.ok(after.some((r) => r.current! < r.logEnd), "the reset left no lag");
  });
});

/** JSON.stringify's replacer for bigints. */
function replacer(_key: string, value: unknown) {
  return typeof value === "bigint" ? value.toString() : value;
}
