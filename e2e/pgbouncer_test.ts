/**
 * The consumer behind a connection pooler, as managed PostgreSQL services offer one (Aiven's
 * connection pools are PgBouncer in transaction mode): nothing it sends may need a session of
 * its own, and PgBouncer refuses startup parameters it does not know.
 */
import assert from "node:assert/strict";
import { runProducer } from "../lib/pipeline/producer.ts";
import { startPgBouncer } from "../testing/pgbouncer.ts";
import {
  consumerArgs,
  runScript,
  stackCreds,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

Deno.test("through PgBouncer in transaction mode (2 server connections for 3 partitions) the consumer stores purchases, cancellations and poison exactly as the manifest says", async () => {
  await withPipeline("e2e_pgbouncer", async ({ connection, topic, table }) => {
    const bouncer = await startPgBouncer(2);
    try {
      const manifest = `${await Deno.makeTempDir()}/manifest.jsonl`;
      await runProducer({
        kafka: connection.kafka,
        topic,
        partitions: 3,
        num: 3000,
        seed: 31,
        batchSize: 200,
        cancelRate: 0.1,
        poisonRate: 0.05,
        manifest,
      });
      const pooled = await writeStackCreds({ ...stackCreds(), postgres: { uri: bouncer.uri } });
      const run = await runScript(
        "consumer.ts",
        consumerArgs({ creds: pooled, topic, table }, "--idle-timeout", "3"),
      );
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /consumed 3\d{3} messages/);
      const direct = await writeStackCreds();
      const verified = await runScript("verify.ts", [
        ...["--creds", direct, "--table-name", table, "--manifest", manifest],
      ]);
      assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      // a second run through the pooler finds nothing new and changes nothing
      const again = await runScript(
        "consumer.ts",
        consumerArgs({ creds: pooled, topic, table }, "--idle-timeout", "2"),
      );
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /consumed 0 messages/);
    } finally {
      await bouncer.stop();
    }
  });
});
