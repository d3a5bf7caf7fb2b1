import assert from "node:assert/strict";
import { defaultGroupId, runConsumer } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { runScript, sql, withPipeline, writeStackCreds } from "../testing/testing.ts";
import type { Ticket } from "../lib/model/columns.ts";

Deno.test("verify passes on a clean run and names the ids after rows are deleted, altered or wrongly refused", async (t) => {
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
    const line = (out: string, label: string) =>
      out.split("\n").find((l) => l.startsWith(label)) ?? "";
    /** Turns a stored ticket into a dead letter of its own message, as if the sink refused it. */
    const refuse = async (ticket: Ticket, reason: string) => {
      const [row] = await sql<{ partition: number; offset: string }>(
        `DELETE FROM ${q.tickets} WHERE ticket_id = $1
         RETURNING kafka_partition AS partition, kafka_offset AS "offset"`,
        [ticket.ticket_id],
      );
      await sql(
        `INSERT INTO ${q.deadLetters} (group_id, target_table, topic, partition, "offset",
           message_key, message_value, reason, detail)
         VALUES ($1, $2, $3, $4, $5, convert_to($6, 'UTF8'), convert_to($7, 'UTF8'), $8, 'by hand')`,
        [
          defaultGroupId("public", table),
          table,
          topic,
          row!.partition,
          row!.offset,
          ticket.ticket_id,
          JSON.stringify(ticket),
          reason,
        ],
      );
    };
    await t.step(
      "valid tickets refused as SEAT_TAKEN or DB_REJECTED are refusals, by reason",
      async () => {
        await refuse(produced[20]!, "SEAT_TAKEN");
        await refuse(produced[30]!, "DB_REJECTED");
        const r = await runScript("verify.ts", args);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(
          r.stdout,
          /dead letters for this group and topic: 2 \(2 refused tickets, 1 DB_REJECTED, 1 SEAT_TAKEN\)/,
        );
        assert.match(r.stdout, /verify: OK/);
      },
    );
    await t.step(
      "a valid ticket refused for a reason a valid ticket cannot have is a mismatch",
      async () => {
        // BAD_EMAIL for a ticket whose email parses, BAD_KEY for one keyed by its ticket_id
        const [badEmail, badKey] = [produced[40]!, produced[60]!];
        await refuse(badEmail, "BAD_EMAIL");
        await refuse(badKey, "BAD_KEY");
        const r = await runScript("verify.ts", args);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        const wrong = line(
          r.stdout,
          "valid tickets refused for a reason a valid ticket cannot have: 2",
        );
        assert.match(wrong, new RegExp(`${badEmail.ticket_id} \\(BAD_EMAIL at \\d@\\d+\\)`));
        assert.match(wrong, new RegExp(`${badKey.ticket_id} \\(BAD_KEY at \\d@\\d+\\)`));
        assert.match(r.stdout, /^missing from the table: 0$/m);
        assert.match(r.stdout, /\(2 refused tickets, 1 DB_REJECTED, 1 SEAT_TAKEN\)/);
        assert.match(r.stdout, /verify: MISMATCH/);
        // made legitimate again for the next step
        await sql(`UPDATE ${q.deadLetters} SET reason = 'SEAT_TAKEN' WHERE target_table = $1`, [
          table,
        ]);
      },
    );
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
      assert.match(line(r.stdout, "missing from the table: 2"), new RegExp(gone1!));
      assert.match(line(r.stdout, "missing from the table: 2"), new RegExp(gone2!));
      assert.match(line(r.stdout, "stored with different fields: 1"), new RegExp(changed!));
      assert.match(line(r.stdout, "in the table but not in the topic: 1"), /not-from-kafka/);
      assert.match(r.stdout, /verify: MISMATCH/);
    });
  });
});
