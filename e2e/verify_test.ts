import assert from "node:assert/strict";
import { runConsumer } from "../lib/consumer.ts";
import { runProducer } from "../lib/producer.ts";
import { runScript, sql, withPipeline, writeStackCreds } from "../lib/testing.ts";
import type { Ticket } from "../lib/tickets.ts";

Deno.test("verify passes on a clean run and names the ids after rows are deleted or altered", async (t) => {
  await withPipeline("e2e_verify", async ({ connection, topic, table, q }) => {
    const creds = await writeStackCreds();
    const produced: Ticket[] = [];
    await runProducer({
      kafka: connection.kafka,
      topic,
      num: 300,
      onTicket: (x) => produced.push(x),
    });
    await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    const args = ["--creds", creds, "--topic-name", topic, "--table-name", table];
    await t.step("clean run", async () => {
      const r = await runScript("verify.ts", args);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /verify: OK/);
      assert.match(r.stdout, /300 messages in 3 partitions, 300 distinct tickets/);
    });
    await t.step("deleted and altered rows", async () => {
      const [gone1, gone2, changed] = [produced[5]!, produced[77]!, produced[150]!].map((x) =>
        x.ticket_id
      );
      await sql(`DELETE FROM ${q.tickets} WHERE ticket_id = ANY($1)`, [[gone1, gone2]]);
      await sql(`UPDATE ${q.tickets} SET email = 'someone.else@example.com' WHERE ticket_id = $1`, [
        changed,
      ]);
      await sql(
        `INSERT INTO ${q.tickets} SELECT 'not-from-kafka', theater, movie, name, email, phone_number, seats, showtime,
           price_amount, price_currency, purchased_at, kafka_topic, kafka_partition, kafka_offset, published_at, stored_at
         FROM ${q.tickets} LIMIT 1`,
      );
      const r = await runScript("verify.ts", args);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const line = (label: string) => r.stdout.split("\n").find((l) => l.startsWith(label)) ?? "";
      assert.match(line("missing from the table: 2"), new RegExp(gone1!));
      assert.match(line("missing from the table: 2"), new RegExp(gone2!));
      assert.match(line("stored with different fields: 1"), new RegExp(changed!));
      assert.match(line("in the table but not in the topic: 1"), /not-from-kafka/);
      assert.match(r.stdout, /verify: MISMATCH/);
    });
  });
});
