/** Honest accounting: --max-messages is reached exactly, and counts match the table. */
import assert from "node:assert/strict";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import {
  consumerArgs,
  consumerCounts,
  runScript,
  sql,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

Deno.test("--max-messages stops after exactly that many messages, over several partitions and small batches", async () => {
  await withPipeline("maxmsg", async (c) => {
    const creds = await writeStackCreds();
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 10_000, partitions: 3 });
    const args = consumerArgs(
      { creds, topic: c.topic, table: c.table },
      "--batch-size",
      "97",
      "--max-messages",
      "3333",
    );
    for (const total of [3333, 6666]) {
      const run = await runScript("consumer.ts", args);
      assert.equal(run.code, 0, run.stderr);
      const counts = consumerCounts(run.stdout);
      assert.deepEqual([counts.received, counts.stored, counts.duplicates], [3333, 3333, 0]);
      const [rows] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${c.q.tickets}`);
      assert.equal(rows!.n, total);
      const [offsets] = await sql<{ n: number }>(
        `SELECT sum(next_offset)::int AS n FROM ${c.q.offsets} WHERE group_id = $1`,
        [defaultGroupId("public", c.table)],
      );
      assert.equal(offsets!.n, total, "stored offsets cover exactly the stored rows");
    }
  });
});
