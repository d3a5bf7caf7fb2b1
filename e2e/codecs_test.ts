/**
 * Record batches compressed by other producers. KafkaJS alone stops a consumer at the first batch
 * in a codec it lacks (snappy, lz4, zstd); librdkafka (kcat here) and Kafka's Java client write
 * them routinely, each with its own framing of snappy.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import { verifyPipeline } from "../lib/commands/verify.ts";
import {
  consumerArgs,
  consumerCounts,
  kcatProduce,
  runScript,
  sql,
  stackInfo,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

const KCAT_CODECS = ["snappy", "lz4", "zstd", "gzip"] as const;
const JAVA_CODECS = ["snappy", "lz4", "zstd"] as const;

/** Kafka's Java ProducerPerformance: `records` values from `payloads` (one a line), no key. */
async function javaProduce(topic: string, payloads: string, records: number, codec: string) {
  const out = await new Deno.Command("bash", {
    args: [
      "dev/stack.sh",
      "tool",
      "org.apache.kafka.tools.ProducerPerformance",
      ...["--topic", topic, "--num-records", String(records), "--throughput", "-1"],
      ...["--payload-file", payloads, "--command-property"],
      ...[`bootstrap.servers=${stackInfo().kafka.plaintext}`, `compression.type=${codec}`],
      "acks=all",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `ProducerPerformance (${codec}) failed: ${text.slice(-2000)}`);
  assert.match(text, new RegExp(`^${records} records sent`, "m"));
}

Deno.test("batches compressed by kcat (snappy, lz4, zstd, gzip) and by Kafka's Java client (snappy, lz4, zstd) are read: tickets stored exactly, unkeyed values dead letters byte for byte", async () => {
  await withPipeline("codecs", async (c) => {
    const creds = await writeStackCreds();
    const dir = await Deno.makeTempDir();
    try {
      await ensureTopic(createKafka(c.connection.kafka), c.topic, KCAT_CODECS.length);
      const gen = new TicketGenerator({ seed: 17 });
      // librdkafka: keyed tickets, one codec a partition
      let tickets = 0;
      for (const [partition, codec] of KCAT_CODECS.entries()) {
        const messages = Array.from({ length: 300 }, (): [string, string] => {
          const { ticket, json } = gen.nextWithJson();
          return [ticket.ticket_id, json];
        });
        await kcatProduce(c.topic, messages, partition, codec);
        tickets += messages.length;
      }
      // the Java client: tickets without a key (BAD_KEY dead letters keep their bytes)
      const lines = Array.from({ length: 50 }, () => gen.nextWithJson().json);
      const payloads = join(dir, "payloads.txt");
      await Deno.writeTextFile(payloads, lines.join("\n"));
      for (const codec of JAVA_CODECS) await javaProduce(c.topic, payloads, 200, codec);
      const unkeyed = 200 * JAVA_CODECS.length;

      const run = await runScript(
        "consumer.ts",
        consumerArgs({ creds, topic: c.topic, table: c.table }, "--idle-timeout", "3"),
      );
      assert.equal(run.code, 0, run.stderr);
      const counts = consumerCounts(run.stdout);
      assert.deepEqual(
        [counts.received, counts.stored, counts.deadLetters],
        [tickets + unkeyed, tickets, unkeyed],
        counts.line,
      );
      const report = await verifyPipeline({
        connection: c.connection,
        topic: c.topic,
        table: c.table,
      });
      // the unkeyed tickets parse (their ids count among the topic's) and are refused BAD_KEY
      assert.deepEqual(
        [report.missing, report.extra, report.mismatched, report.rows, report.tickets],
        [[], [], [], tickets, tickets + lines.length],
      );
      const letters = await sql<{ reason: string; value: string }>(
        `SELECT reason, convert_from(message_value, 'UTF8') AS value FROM ${c.q.deadLetters}
         WHERE group_id = $1`,
        [defaultGroupId("public", c.table)],
      );
      assert.equal(letters.length, unkeyed);
      const known = new Set(lines);
      for (const letter of letters) {
        assert.equal(letter.reason, "BAD_KEY");
        assert.ok(known.has(letter.value), `a value not produced: ${letter.value.slice(0, 80)}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  });
});
