/**
 * The consumer under adversarial input, as a property: arbitrary JSON values, arbitrary bytes,
 * valid and mutated tickets (NUL, lone surrogates, huge strings, padding, impossible and extreme
 * dates, odd numbers, wrong nesting, wrong keys) are produced with kcat, an independent client,
 * and consumed by the real consumer into a fresh table. Every message must end as exactly one
 * stored row or one dead letter, the consumer must exit 0, stored rows must read back equal to
 * their message (verify), and no ticket the parser accepts may be refused by PostgreSQL.
 * Seed: PROPERTY_SEED (env FC_SEED replays a failure); the number of runs is fixed.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { checkKey } from "../lib/pipeline/transform.ts";
import { createKafka } from "../lib/kafka/kafka.ts";
import { runScript, sql, stackInfo, withPipeline, writeStackCreds } from "../testing/testing.ts";
import {
  type Message,
  messageArb,
  preview,
  PROPERTY_SEED,
  validTicketArb,
} from "../testing/ticket_arbitraries.ts";
import type { Ticket } from "../lib/model/columns.ts";
import { parseTicket } from "../lib/model/ticket.ts";
import { verifyPipeline } from "../lib/commands/verify.ts";
import type { Connection } from "../lib/config/config.ts";

const PARTITIONS = 2;
const encoder = new TextEncoder();

/** Creates a topic that takes any producer timestamp (the broker's default refuses far futures). */
async function createTopic(connection: Connection, topic: string): Promise<void> {
  const admin = createKafka(connection.kafka, { retries: 2 }).admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic,
        numPartitions: PARTITIONS,
        configEntries: [{ name: "message.timestamp.after.max.ms", value: "9223372036854775807" }],
      }],
    });
  } finally {
    await admin.disconnect();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) out.set(p, offset), offset += p.length;
  return out;
}

function contains(haystack: Uint8Array | null, needle: Uint8Array): boolean {
  if (!haystack) return false;
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/**
 * Produces messages in order to one partition with kcat on the plaintext listener: key and value
 * raw, split by delimiters no message holds; `-Z` sends an empty key or value as null.
 */
async function kcatProduce(topic: string, partition: number, messages: Message[]): Promise<void> {
  let n = 0;
  let keyMark: Uint8Array, end: Uint8Array;
  do {
    n++;
    keyMark = encoder.encode(`\x1f<key${n}>\x1f`);
    end = encoder.encode(`\x1e<end${n}>\x1e`);
  } while (
    messages.some((m) =>
      contains(m.key, keyMark) || contains(m.value, keyMark) || contains(m.key, end) ||
      contains(m.value, end)
    )
  );
  const input = concat(
    messages.flatMap((m) => [m.key ?? new Uint8Array(), keyMark, m.value ?? new Uint8Array(), end]),
  );
  const child = new Deno.Command("kcat", {
    args: [
      ...["-b", stackInfo().kafka.plaintext, "-P", "-t", topic, "-p", String(partition), "-Z"],
      ...["-K", new TextDecoder().decode(keyMark), "-D", new TextDecoder().decode(end)],
      ...["-X", "enable.idempotence=true", "-X", "message.max.bytes=10000000"],
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(input);
  await writer.close();
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `kcat failed: ${stderr}`);
}

/** Checks that each partition holds exactly the messages produced to it, from offset 0. */
async function checkLog(connection: Connection, topic: string, counts: number[]): Promise<void> {
  const admin = createKafka(connection.kafka, { retries: 2 }).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    const log = offsets.sort((a, b) => a.partition - b.partition).map((o) => [o.low, o.high]);
    assert.deepEqual(
      log,
      counts.map((n) => ["0", String(n)]),
      "kcat did not deliver every message",
    );
  } finally {
    await admin.disconnect();
  }
}

/** The message as Kafka hands it back: kcat's `-Z` turns an empty key or value into null. */
function delivered(m: Message): Message {
  return {
    ...m,
    key: m.key && m.key.length > 0 ? m.key : null,
    value: m.value && m.value.length > 0 ? m.value : null,
  };
}

/** Tickets `t` shares a seat of a show with (so one of them may be refused as SEAT_TAKEN). */
function clash(t: Ticket, u: Ticket): boolean {
  return t !== u && t.theater === u.theater && t.movie === u.movie &&
    Date.parse(t.showtime) === Date.parse(u.showtime) && t.seats.some((s) => u.seats.includes(s));
}

/** The ticket_id of a message the parser accepts (ids must be unique: no duplicates to count). */
function acceptedId(m: Message): unknown {
  const parsed = parseTicket(m.value);
  return parsed.ok ? parsed.ticket.ticket_id : m;
}

/** A run's messages, shown in reports by count only (the failure message names the bad ones). */
const runArb = fc.uniqueArray(messageArb, { minLength: 150, maxLength: 220, selector: acceptedId })
  .map((messages) =>
    Object.assign({ messages }, {
      [fc.toStringMethod]: () => `${messages.length} messages (replay with the seed and path)`,
    })
  );

Deno.test("consumer: every adversarial message from kcat ends as exactly one row or one dead letter, rows equal to their message", async () => {
  const creds = await writeStackCreds();
  await fc.assert(
    fc.asyncProperty(runArb, async ({ messages: produced }) => {
      await withPipeline("e2e_property", async ({ connection, topic, table, q }) => {
        await createTopic(connection, topic);
        const messages = produced.map(delivered);
        const byPartition = Array.from({ length: PARTITIONS }, () => [] as Message[]);
        messages.forEach((m, i) => byPartition[i % PARTITIONS]!.push(m));
        for (let p = 0; p < PARTITIONS; p++) await kcatProduce(topic, p, byPartition[p]!);
        await checkLog(connection, topic, byPartition.map((list) => list.length));

        const run = await runScript("consumer.ts", [
          ...["--creds", creds, "--topic-name", topic, "--table-name", table],
          ...["--idle-timeout", "3", "--db-retry", "15"], // an outage is not what this tests
        ]);
        const where = (p: number, offset: number) => {
          const m = byPartition[p]![offset]!;
          return `${p}@${offset} (${m.label}; key ${preview(m.key, 80)}): ${preview(m.value)}`;
        };
        assert.equal(run.code, 0, `consumer exited ${run.code}: ${run.stderr.slice(-3000)}`);
        assert.match(run.stdout, new RegExp(`consumed ${messages.length} messages`), run.stdout);

        const rows = await sql<{ p: number; o: string }>(
          `SELECT kafka_partition AS p, kafka_offset::text AS o FROM ${q.tickets}`,
        );
        const letters = await sql<{ p: number; o: string; reason: string; detail: string }>(
          `SELECT partition AS p, "offset"::text AS o, reason, detail FROM ${q.deadLetters}
           WHERE group_id = $1 AND topic = $2`,
          [defaultGroupId("public", table), topic],
        );
        const rowAt = new Map<string, number>();
        for (const r of rows) rowAt.set(`${r.p}@${r.o}`, (rowAt.get(`${r.p}@${r.o}`) ?? 0) + 1);
        const letterAt = new Map<string, (typeof letters)[number][]>();
        for (const l of letters) {
          letterAt.set(`${l.p}@${l.o}`, [...(letterAt.get(`${l.p}@${l.o}`) ?? []), l]);
        }

        const accepted: Ticket[] = [];
        const expected = byPartition.map((list) =>
          list.map((m) => {
            const parsed = checkKey(parseTicket(m.value), m.key);
            if (parsed.ok) accepted.push(parsed.ticket);
            return parsed;
          })
        );
        const problems: string[] = [];
        let total = 0;
        byPartition.forEach((list, p) =>
          list.forEach((_, offset) => {
            total++;
            const at = `${p}@${offset}`;
            const nRows = rowAt.get(at) ?? 0;
            const mine = letterAt.get(at) ?? [];
            rowAt.delete(at);
            letterAt.delete(at);
            if (nRows + mine.length !== 1) {
              problems.push(
                `${nRows} row(s) and ${mine.length} dead letter(s) for ${where(p, offset)}`,
              );
              return;
            }
            const parsed = expected[p]![offset]!;
            const letter = mine[0];
            if (!parsed.ok) {
              if (!letter) {
                problems.push(`stored although refused (${parsed.reason}): ${where(p, offset)}`);
              } else if (letter.reason !== parsed.reason) {
                problems.push(
                  `dead letter ${letter.reason}, parser said ${parsed.reason}: ${where(p, offset)}`,
                );
              }
            } else if (letter) {
              const t = parsed.ticket;
              const refusedFairly = letter.reason === "SEAT_TAKEN" &&
                accepted.some((u) => clash(t, u));
              if (!refusedFairly) {
                problems.push(
                  `parser accepted, dead letter ${letter.reason} (${
                    letter.detail.slice(0, 200)
                  }): ${where(p, offset)}`,
                );
              }
            }
          })
        );
        for (const at of [...rowAt.keys(), ...letterAt.keys()]) {
          problems.push(`a row or dead letter at ${at}, where no message was produced`);
        }

        const report = await verifyPipeline({ connection, topic, table, readTimeoutSeconds: 60 });
        assert.equal(report.messages, total, "verify read another number of messages");
        for (
          const [kind, ids] of Object.entries({
            mismatched: report.mismatched,
            missing: report.missing,
            extra: report.extra,
            deadLettersMissing: report.deadLettersMissing,
          })
        ) {
          for (const id of ids) {
            const found = byPartition.flatMap((list, p) =>
              list.map((_, offset) => ({ p, offset })).filter(({ p: pp, offset }) => {
                const parsed = expected[pp]![offset]!;
                return parsed.ok ? parsed.ticket.ticket_id === id : `${pp}@${offset}` === id;
              })
            );
            problems.push(
              `verify: ${kind} ${id}: ${found.map((f) => where(f.p, f.offset)).join("; ")}`,
            );
          }
        }
        assert.deepEqual(problems, [], `consumer output: ${run.stdout}`);
      });
    }),
    { seed: PROPERTY_SEED, numRuns: 2, endOnFailure: true },
  );
});

Deno.test(
  "consumer: tickets with extreme Kafka timestamps are stored, never stop the pipeline",
  () => extremeTimestamps(),
);

/** Valid tickets with Kafka timestamps at and past the limits of JavaScript and PostgreSQL. */
async function extremeTimestamps() {
  await withPipeline("e2e_timestamps", async ({ connection, topic, table, q }) => {
    await createTopic(connection, topic);
    const stamps = [
      "0",
      "1",
      "253402300799999",
      "253402300800000",
      "8640000000000000",
      "8640000000000001",
      "9223372036854775807",
    ];
    const tickets = fc.sample(validTicketArb, { seed: PROPERTY_SEED, numRuns: stamps.length })
      .map((t, i) => ({
        ...t,
        ticket_id: `${t.ticket_id.slice(0, 50)}-${i}`,
        seats: [`A${i + 1}`],
      }));
    const producer = createKafka(connection.kafka).producer();
    await producer.connect();
    try {
      await producer.send({
        topic,
        messages: tickets.map((t, i) => ({
          key: t.ticket_id,
          value: JSON.stringify(t),
          partition: 0,
          timestamp: stamps[i],
        })),
      });
    } finally {
      await producer.disconnect();
    }
    const creds = await writeStackCreds();
    const run = await runScript("consumer.ts", [
      ...["--creds", creds, "--topic-name", topic, "--table-name", table],
      ...["--idle-timeout", "3", "--db-retry", "15"],
    ]);
    assert.equal(run.code, 0, run.stderr.slice(-3000));
    const rows = await sql<{ ticket_id: string; published: string | null }>(
      `SELECT ticket_id, (extract(epoch FROM published_at) * 1000)::bigint::text AS published
       FROM ${q.tickets}`,
    );
    const byId = new Map(rows.map((r) => [r.ticket_id, r.published]));
    const letters = await sql<{ offset: string; reason: string; detail: string }>(
      `SELECT "offset"::text AS "offset", reason, detail FROM ${q.deadLetters} WHERE topic = $1`,
      [topic],
    );
    const letterAt = new Map(letters.map((l) => [Number(l.offset), `${l.reason}: ${l.detail}`]));
    const problems: string[] = [];
    tickets.forEach((t, i) => {
      const published = byId.get(t.ticket_id);
      if (published === undefined) {
        problems.push(
          `timestamp ${stamps[i]}: not stored (${letterAt.get(i) ?? "no dead letter"})`,
        );
      } else if (published !== null && published !== stamps[i]) {
        // the publish time as sent, or none when JavaScript cannot hold it
        problems.push(`timestamp ${stamps[i]}: published_at stored as ${published}`);
      }
    });
    assert.deepEqual(problems, []);
  });
}
