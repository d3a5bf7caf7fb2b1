/**
 * Cancellations and known-answer poison as the observers see them, against the real broker and
 * database: the consumer's metrics records carry `cancelled` and the dead letters by reason, the
 * Prometheus endpoint counts `tickets_cancelled_total`, both equal to what the database holds and
 * the report shows them; and `dlq replay` of UNKNOWN_TICKET letters republishes only the
 * cancellations whose ticket is stored now (or replayed before them), which then apply; and the
 * producer task's --manifest outside logs/ is refused, naming logs/.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { readMetrics } from "../lib/observe/metrics.ts";
import type { QualifiedNames } from "../lib/postgres/schema.ts";
import { formatReportSummary, groupRuns } from "../lib/observe/report.ts";
import { runConsumer } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { seriesValue } from "../testing/prometheus.ts";
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import { showTickets } from "../testing/sink_batches.ts";
import { encodeCancel } from "../lib/model/message.ts";
import {
  deleteTopics,
  freePort,
  kcatProduce,
  ROOT,
  runScript,
  sql,
  stackConnection,
  waitFor,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

/** Each ticket's status, the seats it holds and its payment's status, by ticket_id. */
function ticketStates(q: QualifiedNames) {
  return sql<{ id: string; status: string; held: number; paid: string }>(
    `SELECT t.ticket_id AS id, t.status,
       (SELECT count(*)::int FROM ${q.seats} s WHERE s.ticket_id = t.ticket_id) AS held,
       (SELECT p.status FROM ${q.transactions} p WHERE p.ticket_id = t.ticket_id) AS paid
     FROM ${q.tickets} t ORDER BY t.ticket_id`,
  );
}

/** {@linkcode ticketStates} of tickets each cancelled: no seat held, payment refunded. */
function cancelledOnce(ids: string[]) {
  return ids.map((id) => ({ id, status: "cancelled", held: 0, paid: "REFUNDED" }))
    .sort((x, y) => x.id.localeCompare(y.id));
}

Deno.test("consumer: metrics records and /metrics count cancellations and dead letters by reason exactly as the database holds them; the report shows them", async () => {
  await withPipeline("e2e_lc_obs", async ({ connection, topic, table, q }) => {
    const dir = await Deno.makeTempDir({ prefix: "tickets-lc-obs-" });
    const metricsLog = join(dir, "metrics.jsonl");
    const produced = await runProducer({
      kafka: connection.kafka,
      topic,
      num: 1200,
      seed: 21,
      batchSize: 100,
      cancelRate: 0.15,
      poisonRate: 0.1,
      manifest: join(dir, "manifest.jsonl"),
    });
    const port = freePort();
    const url = `http://127.0.0.1:${port}/metrics`;
    let text = "";
    const run = runConsumer({
      connection,
      topic,
      table,
      idleTimeoutSeconds: 4,
      metricsLog,
      prometheus: { port },
    });
    try {
      await waitFor("a scrape counting every message of the topic", async () => {
        text = await fetch(url).then((r) => r.text()).catch(() => "");
        return seriesValue(text, "tickets_received_total") === produced.sent;
      }, 30_000);
      const summary = await run;
      const [{ cancelled }] = await sql<{ cancelled: number }>(
        `SELECT count(*)::int AS cancelled FROM ${q.tickets} WHERE status = 'cancelled'`,
      ) as [{ cancelled: number }];
      const letters = Object.fromEntries(
        (await sql<{ reason: string; n: number }>(
          `SELECT reason, count(*)::int AS n FROM ${q.deadLetters} WHERE target_table = $1
           GROUP BY reason ORDER BY reason`,
          [table],
        )).map((l) => [l.reason, l.n]),
      );
      assert.ok(cancelled > 50, `only ${cancelled} cancelled`);
      assert.ok(Object.keys(letters).length >= 8, JSON.stringify(letters));
      assert.ok(letters.UNKNOWN_TICKET! > 0 && letters.SEAT_TAKEN! > 0, JSON.stringify(letters));
      assert.equal(summary.cancelled, cancelled);

      // the metrics history: every consumer record has both, the end record the final counts
      const records = readMetrics(metricsLog).records.filter((r) => r.role === "consumer");
      assert.ok(records.length >= 2);
      for (const r of records) assert.ok(r.deadLettersByReason, `${r.event} record without them`);
      const end = records.find((r) => r.event === "end")!;
      assert.equal(end.counts.cancelled, cancelled);
      assert.deepEqual(end.deadLettersByReason, letters);
      assert.equal(
        Object.values(end.deadLettersByReason!).reduce((a, b) => a + b, 0),
        end.counts.deadLetters,
      );

      // /metrics, scraped live once every message was written
      const labels = { role: "consumer", topic, table: `public.${table}` };
      assert.equal(seriesValue(text, "tickets_cancelled_total", labels), cancelled);
      for (const [reason, n] of Object.entries(letters)) {
        assert.equal(seriesValue(text, "tickets_dead_letters_total", { ...labels, reason }), n);
      }

      // the report reads them: cancelled in the summary, every reason with its count
      const report = formatReportSummary(readMetrics(metricsLog).records, { topic });
      assert.match(report, new RegExp(`consumer: 1 run, stored [\\d,]+, cancelled ${cancelled},`));
      for (const [reason, n] of Object.entries(letters)) {
        assert.match(report, new RegExp(`\\b${reason} ${n.toLocaleString("en-US")}\\b`));
      }
      const [consumerRun] = groupRuns(readMetrics(metricsLog).records).filter((r) =>
        r.role === "consumer" && r.topic === topic
      );
      assert.deepEqual(consumerRun!.deadLettersByReason, letters);
    } finally {
      await run.catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("dlq replay of UNKNOWN_TICKET letters: a cancellation whose ticket is stored now is published and applied; one whose ticket is still unknown is kept", async () => {
  await withPipeline("e2e_lc_dlq", async ({ connection, topic, table, q }) => {
    await ensureTopic(createKafka(connection.kafka), topic, 1);
    const gen = new TicketGenerator({ seed: 61 });
    const [early, never, late] = [gen.next(), gen.next(), gen.next()];
    const cancel = (id: string) =>
      new TextDecoder().decode(
        encodeCancel({
          ticket_id: id,
          cancelled_at: "2025-11-25T10:00:00Z",
          reason: "changed plans",
        }),
      );
    // two cancellations of tickets not stored; a third after its purchase, to show order
    await kcatProduce(topic, [
      [early.ticket_id, cancel(early.ticket_id)],
      [never.ticket_id, cancel(never.ticket_id)],
      [late.ticket_id, JSON.stringify(late)],
      [late.ticket_id, cancel(late.ticket_id)],
    ]);
    await runConsumer({ connection, topic, table, idleTimeoutSeconds: 2 });
    const letters = () =>
      sql<{ id: string; key: string; replayed: boolean }>(
        `SELECT id::text, convert_from(message_key, 'UTF8') AS key,
           replayed_at IS NOT NULL AS replayed
         FROM ${q.deadLetters} WHERE target_table = $1 AND reason = 'UNKNOWN_TICKET' ORDER BY id`,
        [table],
      );
    assert.deepEqual((await letters()).map((l) => l.key), [early.ticket_id, never.ticket_id]);

    // the purchase of `early` arrives late; `never` is never bought
    await kcatProduce(topic, [[early.ticket_id, JSON.stringify(early)]]);
    await runConsumer({ connection, topic, table, idleTimeoutSeconds: 2 });
    const creds = await writeStackCreds();
    const replay = await runScript("dlq.ts", [
      ...["replay", "--creds", creds, "--table-name", table, "--reason", "UNKNOWN_TICKET", "--all"],
    ]);
    assert.equal(replay.code, 0, replay.stdout + replay.stderr);
    const [first, second] = await letters();
    assert.match(
      replay.stdout,
      new RegExp(`kept 1 UNKNOWN_TICKET letter.*ids ${second!.id}$`, "m"),
    );
    assert.match(replay.stdout, new RegExp(`published 1 letter\\(s\\) again to ${topic}`));
    assert.deepEqual([first!.replayed, second!.replayed], [true, false]);

    const summary = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 2 });
    assert.equal(summary.cancelled, 1);
    assert.equal(summary.deadLetters, 0);
    const rows = await ticketStates(q);
    assert.deepEqual(rows, cancelledOnce([early.ticket_id, late.ticket_id]));

    // a second replay has nothing new: `never` is still kept, `early` was replayed already
    const again = await runScript("dlq.ts", [
      ...["replay", "--creds", creds, "--table-name", table, "--reason", "UNKNOWN_TICKET", "--all"],
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /kept 1 UNKNOWN_TICKET letter/);
    assert.match(again.stdout, /nothing to replay/);
  });
});

Deno.test("dlq replay of a purchase and its cancellation in one call: the purchase goes out first, so the cancellation applies", async () => {
  await withPipeline("e2e_lc_pair", async ({ connection, topic, table, q }) => {
    await ensureTopic(createKafka(connection.kafka), topic, 1);
    // a and b want the same seat of one show: b is refused (SEAT_TAKEN), so its cancellation
    // finds no ticket (UNKNOWN_TICKET); then a is cancelled, which frees the seat
    const [a, b] = showTickets(67, [["F7"], ["F7"]]);
    const cancel = (id: string) =>
      new TextDecoder().decode(
        encodeCancel({ ticket_id: id, cancelled_at: "2025-11-25T10:00:00Z", reason: "refund" }),
      );
    await kcatProduce(topic, [
      [a!.ticket_id, JSON.stringify(a)],
      [b!.ticket_id, JSON.stringify(b)],
      [b!.ticket_id, cancel(b!.ticket_id)],
      [a!.ticket_id, cancel(a!.ticket_id)],
    ]);
    const first = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 2 });
    assert.deepEqual([first.stored, first.seatTaken, first.unknownTicket, first.cancelled], [
      1,
      1,
      1,
      1,
    ]);
    const reasons = () =>
      sql<{ reason: string; replayed: boolean }>(
        `SELECT reason, replayed_at IS NOT NULL AS replayed FROM ${q.deadLetters}
         WHERE target_table = $1 ORDER BY "offset"`,
        [table],
      );
    assert.deepEqual((await reasons()).map((r) => r.reason), ["SEAT_TAKEN", "UNKNOWN_TICKET"]);

    // both letters in one call: b's cancellation is kept back unless b's purchase goes first
    const creds = await writeStackCreds();
    const replay = await runScript("dlq.ts", [
      ...["replay", "--creds", creds, "--table-name", table, "--all"],
    ]);
    assert.equal(replay.code, 0, replay.stdout + replay.stderr);
    assert.match(replay.stdout, new RegExp(`published 2 letter\\(s\\) again to ${topic}`));
    assert.doesNotMatch(replay.stdout, /kept \d+ UNKNOWN_TICKET/);
    assert.deepEqual((await reasons()).map((r) => r.replayed), [true, true]);

    const second = await runConsumer({ connection, topic, table, idleTimeoutSeconds: 2 });
    assert.deepEqual([second.stored, second.cancelled, second.deadLetters], [1, 1, 0]);
    const rows = await ticketStates(q);
    assert.deepEqual(rows, cancelledOnce([a!.ticket_id, b!.ticket_id]));
  });
});

Deno.test("deno task producer refuses a --manifest outside logs/ (its --allow-write) with exit 2, naming logs/", async () => {
  const topic = `e2e_lc_perm_${crypto.randomUUID().slice(0, 8)}`;
  const outside = join(await Deno.makeTempDir({ prefix: "tickets-lc-perm-" }), "m.jsonl");
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        ...["task", "producer", "--creds", await writeStackCreds(), "--topic-name", topic],
        ...["--num", "5", "--cancel-rate", "0.5", "--no-metrics-log", "--manifest", outside],
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, stderr);
    assert.match(
      stderr,
      /--manifest .*: cannot write it .*may write only under logs\/: use e\.g\./,
    );
    assert.ok(!(await Deno.stat(outside).then(() => true, () => false)), "no manifest written");
  } finally {
    await Deno.remove(dirname(outside), { recursive: true });
    await deleteTopics(await stackConnection(), [topic]).catch(() => {});
  }
});
