/** Poison and conflicting input: dead letters with reasons, recorded conflicts, replay after a fix. */
import assert from "node:assert/strict";
import { runConsumer } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import {
  consumerArgs,
  kcatProduce,
  runScript,
  sql,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";
import { TicketGenerator } from "../lib/model/generator.ts";

Deno.test("every kind of poison message becomes a dead letter with its reason; the consumer keeps going", async () => {
  await withPipeline("e2e_poison_all", async ({ connection, topic, table, q }) => {
    const gen = new TicketGenerator();
    const good = Array.from({ length: 40 }, () => gen.next());
    const base = gen.next();
    const json = (o: unknown) => JSON.stringify(o);
    const poison: { key: string | null; value: Uint8Array | string | null; reason: string }[] = [
      { key: "p1", value: "{not json", reason: "BAD_JSON" },
      { key: "p2", value: json({ ...base, ticket_id: "p2", seats: "A1" }), reason: "WRONG_TYPE" },
      {
        key: "p3",
        value: json({ ...base, ticket_id: "p3", email: undefined }),
        reason: "MISSING_FIELD",
      },
      {
        key: "p4",
        value: new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
        reason: "BAD_UTF8",
      },
      {
        key: "p5",
        value: json({ ...base, ticket_id: "p5", note: "x".repeat(100_000) }),
        reason: "TOO_LARGE",
      },
      { key: "p6", value: "", reason: "EMPTY" },
      { key: "p7", value: null, reason: "EMPTY" },
      { key: null, value: json({ ...base, ticket_id: "p8" }), reason: "BAD_KEY" },
      {
        key: "p9",
        value: json({ ...base, ticket_id: "p9", seats: ["A1", "A1"] }),
        reason: "BAD_SEAT",
      },
    ];
    const queue: { key: string | null; value: Uint8Array | string | null }[] = good.map((t) => ({
      key: t.ticket_id,
      value: json(t) as Uint8Array | string | null,
    }));
    poison.forEach((p, i) => queue.splice(i * 4 + 1, 0, p));
    await runProducer({
      kafka: connection.kafka,
      topic,
      partitions: 1,
      source: () => queue.shift(),
    });
    const summary = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    assert.equal(summary.stored, 40);
    assert.equal(summary.deadLetters, poison.length);
    const dead = await sql<{ reason: string; offset: string }>(
      `SELECT reason, "offset" FROM ${q.deadLetters} WHERE target_table = $1 ORDER BY "offset"`,
      [table],
    );
    assert.deepEqual(dead.map((d) => d.reason), poison.map((p) => p.reason));
    const [{ n }] = await sql<{ n: string }>(`SELECT count(*) AS n FROM ${q.tickets}`) as [
      { n: string },
    ];
    assert.equal(Number(n), 40);
  });
});

Deno.test("the same ticket_id with different content: the first stored wins, the conflict is recorded", async () => {
  await withPipeline("e2e_conflict", async ({ connection, topic, table, q }) => {
    const t = new TicketGenerator().next();
    const changed = { ...t, name: "Someone Else" };
    const queue = [t, t, changed].map((x) => ({ key: x.ticket_id, value: JSON.stringify(x) }));
    await runProducer({
      kafka: connection.kafka,
      topic,
      partitions: 1,
      source: () => queue.shift(),
    });
    const summary = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    assert.deepEqual([summary.stored, summary.duplicates, summary.conflicts], [1, 1, 1]);
    const rows = await sql<{ name: string }>(`SELECT name FROM ${q.tickets}`);
    assert.deepEqual(rows.map((r) => r.name), [t.name]);
    const conflicts = await sql<{ offset: string; value: string }>(
      `SELECT "offset", convert_from(message_value, 'UTF8') AS value FROM ${q.conflicts} WHERE target_table = $1`,
      [table],
    );
    assert.equal(conflicts.length, 1);
    assert.equal(conflicts[0]!.offset, "2");
    assert.equal(JSON.parse(conflicts[0]!.value).name, "Someone Else");
  });
});

Deno.test("dlq list shows dead letters and dlq replay re-feeds chosen ones after a fix", async () => {
  await withPipeline("e2e_dlq", async ({ connection, topic, table, q }) => {
    const creds = await writeStackCreds();
    const gen = new TicketGenerator();
    const big = { ...gen.next(), note: "y".repeat(70_000) }; // over the default 64 KiB cap
    const queue = [gen.next(), big, gen.next()].map((x) => ({
      key: x.ticket_id,
      value: JSON.stringify(x),
    }));
    queue.push({ key: "junk", value: "junk" });
    await runProducer({
      kafka: connection.kafka,
      topic,
      partitions: 1,
      source: () => queue.shift(),
    });
    await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    const list = await runScript("dlq.ts", ["list", "--creds", creds, "--table-name", table]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /TOO_LARGE/);
    assert.match(list.stdout, /BAD_JSON/);
    assert.match(list.stderr, /2 dead letter\(s\)/);
    // the fix: a larger cap; then replay only the TOO_LARGE letter
    const replay = await runScript("dlq.ts", [
      "replay",
      "--creds",
      creds,
      "--table-name",
      table,
      "--reason",
      "TOO_LARGE",
      "--all",
    ]);
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /published 1 letter\(s\) again to/);
    const summary = await runConsumer({
      connection,
      topic,
      table,
      idleTimeoutSeconds: 3,
      maxMessageBytes: 200_000,
    });
    assert.equal(summary.stored, 1);
    const [row] = await sql<{ n: string }>(
      `SELECT count(*) AS n FROM ${q.tickets} WHERE ticket_id = $1`,
      [big.ticket_id],
    );
    assert.equal(Number(row!.n), 1);
    const again = await runScript("dlq.ts", [
      "replay",
      "--creds",
      creds,
      "--table-name",
      table,
      "--reason",
      "TOO_LARGE",
      "--all",
    ]);
    assert.match(again.stdout, /nothing to replay/);
  });
});

Deno.test("tickets PostgreSQL refuses (produced with kcat) become DB_REJECTED dead letters; the rest of the batch is stored and the consumer exits 0", async () => {
  await withPipeline("e2e_dbreject", async ({ connection, topic, table, q }) => {
    // the database, not the parser, refuses these: a constraint the parser knows nothing of
    await sql(
      `ALTER TABLE ${q.tickets} ADD CONSTRAINT no_x CHECK (movie <> 'Refused By The Database')`,
    );
    await ensureTopic(createKafka(connection.kafka), topic, 1);
    const gen = new TicketGenerator({ seed: 77 });
    const tickets = Array.from({ length: 300 }, () => gen.next());
    const refused = new Set([0, 150, 151, 299]);
    for (const i of refused) tickets[i] = { ...tickets[i]!, movie: "Refused By The Database" };
    await kcatProduce(topic, tickets.map((t) => [t.ticket_id, JSON.stringify(t)]));
    const creds = await writeStackCreds();
    const run = await runScript(
      "consumer.ts",
      consumerArgs({ creds, topic, table }, "--idle-timeout", "3"),
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /stored 296, duplicates 0, conflicts 0, dead letters 4 \(4 DB_REJECTED\)/,
    );
    const dead = await sql<{ offset: string; reason: string; detail: string; v: string }>(
      `SELECT "offset", reason, detail, convert_from(message_value, 'UTF8') AS v
       FROM ${q.deadLetters} WHERE target_table = $1 ORDER BY "offset"`,
      [table],
    );
    assert.deepEqual(
      dead.map((d) => [Number(d.offset), d.reason]),
      [...refused].map((i) => [i, "DB_REJECTED"]),
    );
    for (const d of dead) {
      assert.match(d.detail, /23514 .*no_x/);
      assert.equal(d.v, JSON.stringify(tickets[Number(d.offset)])); // the raw message, as it came
    }
    const [row] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${q.tickets}`);
    assert.equal(row!.n, 296);
    // a second run finds everything done: nothing re-read, nothing stuck
    const again = await runScript(
      "consumer.ts",
      consumerArgs({ creds, topic, table }, "--idle-timeout", "2"),
    );
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^consumed 0 messages/m);
  });
});
