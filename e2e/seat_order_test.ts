/**
 * Seat refusals do not depend on batching: a ticket is refused only for a seat held by a ticket
 * that is stored, so a ticket refused in a batch frees its other seats for the next ticket.
 */
import assert from "node:assert/strict";
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import {
  consumerArgs,
  kcatProduce,
  runScript,
  sql,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";
import type { Ticket } from "../lib/model/columns.ts";
import { TicketGenerator } from "../lib/model/generator.ts";

Deno.test("consumer.ts gives the same seats whatever --batch-size: a ticket refused for a sold seat frees its other seats for the next ticket", async () => {
  const gen = new TicketGenerator({ seed: 1212 });
  const show = gen.next();
  const ticket = (seats: string[]): Ticket => ({
    ...gen.next(),
    theater: show.theater,
    movie: show.movie,
    showtime: show.showtime,
    seats,
  });
  // T0 sells B1; U wants B1 and B2, so it is refused, and V may have B2. F, another seat of the
  // show, puts U and V in one batch of 2 after T0 was committed; one batch of 5,000 holds all
  const t: Record<string, Ticket> = {
    T0: ticket(["B1"]),
    F: ticket(["C7"]),
    U: ticket(["B1", "B2"]),
    V: ticket(["B2"]),
  };
  const name = new Map(Object.entries(t).map(([n, x]) => [x.ticket_id, n]));
  const named = (id: string) => name.get(id) ?? id;
  const creds = await writeStackCreds();
  for (const batchSize of [1, 2, 5000]) {
    await withPipeline("e2e_seat_order", async ({ connection, topic, table, q }) => {
      await ensureTopic(createKafka(connection.kafka), topic, 1);
      await kcatProduce(
        topic,
        Object.values(t).map((x) => [x.ticket_id, JSON.stringify(x)]),
      );
      const run = await runScript(
        "consumer.ts",
        consumerArgs(
          { creds, topic, table },
          "--batch-size",
          String(batchSize),
          "--idle-timeout",
          "2",
        ),
      );
      const what = `--batch-size ${batchSize}`;
      assert.equal(run.code, 0, `${what}: ${run.stderr}`);
      assert.match(
        run.stdout,
        /^consumed 4 messages in [\d.]+ s of work \(\d+ tickets\/s\): stored 3, duplicates 0, conflicts 0, dead letters 1 \(1 SEAT_TAKEN\)/m,
        `${what}: ${run.stdout}`,
      );
      const stored = await sql<{ ticket_id: string }>(
        `SELECT ticket_id FROM ${q.tickets} ORDER BY kafka_offset`,
      );
      const seats = await sql<{ seat: string; ticket_id: string }>(
        `SELECT seat, ticket_id FROM ${q.seats} ORDER BY seat`,
      );
      const dead = await sql<{ offset: string; key: string; reason: string; detail: string }>(
        `SELECT "offset", convert_from(message_key, 'UTF8') AS key, reason, detail
         FROM ${q.deadLetters} WHERE target_table = $1 ORDER BY "offset"`,
        [table],
      );
      assert.deepEqual(
        {
          stored: stored.map((r) => named(r.ticket_id)),
          seats: seats.map((r) => `${r.seat}:${named(r.ticket_id)}`),
          dead: dead.map((r) =>
            `${r.offset} ${named(r.key)} ${r.reason} ${
              named(r.detail.replace(/^seat B1 .* is sold to ticket /, ""))
            }`
          ),
        },
        {
          stored: ["T0", "F", "V"],
          seats: ["B1:T0", "B2:V", "C7:F"],
          dead: ["2 U SEAT_TAKEN T0"],
        },
        what,
      );
    });
  }
});
