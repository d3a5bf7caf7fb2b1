/**
 * Dead letters: list them, and replay chosen ones (after a fix) by publishing their original key
 * and bytes again to their topic; each replayed letter is marked so it is not replayed twice.
 * Letters are replayed in their topic's offset order, so a purchase goes out before a later
 * cancellation of it. An UNKNOWN_TICKET letter (a cancellation whose ticket was not stored) is
 * replayed only when its ticket is stored now, or its purchase is replayed before it in the same
 * call: the consumer then applies it. Others are kept (not published, not marked) and counted,
 * since replaying them would only make another UNKNOWN_TICKET letter.
 * @module
 */
import { MARKER_REASONS } from "../pipeline/sink.ts";
import { Buffer } from "node:buffer";
import { defineCommand, parseCommandLine } from "../cli/cli.ts";
import { CONNECTION_FLAGS, resolveConnection } from "../config/config.ts";
import { AppError } from "../errors.ts";
import { createKafka, describeKafkaError, withDeadline } from "../kafka/kafka.ts";
import { createPool } from "../postgres/postgres.ts";
import { qualify } from "../postgres/schema.ts";
import { parseMessage, UNKNOWN_TICKET } from "../model/message.ts";
import { checkTopicFlag, PIPELINE_FLAGS } from "./flags.ts";

/** `dlq.ts`. */
export const DLQ_SPEC = defineCommand({
  name: "dlq",
  summary: "list dead letters (dlq list) or publish chosen ones again (dlq replay)",
  flags: {
    "table-name": {
      ...PIPELINE_FLAGS["table-name"],
      required: false,
      description: "only letters for this ticket table",
    },
    "schema": { ...PIPELINE_FLAGS["schema"], description: "schema of the pipeline tables" },
    "reason": { type: "string", description: "only letters with this reason, e.g. BAD_JSON" },
    "id": {
      type: "string",
      description: "replay: comma-separated dead-letter ids",
      check: (ids) => {
        if (!ids.split(",").every((id) => /^\d+$/.test(id.trim()))) {
          throw new AppError("USAGE", "--id must be comma-separated numbers");
        }
      },
    },
    "all": { type: "boolean", description: "replay: every letter matching the filters" },
    "again": { type: "boolean", description: "replay: include letters already replayed" },
    "to-topic": {
      type: "string",
      description: "replay: publish here instead of the original topic",
      check: (topic) => checkTopicFlag("to-topic", topic),
    },
    "limit": {
      type: "integer",
      description: "list: most rows shown",
      default: 50,
      min: 1,
      max: 1_000_000,
    },
    "json": { type: "boolean", description: "list: JSON lines instead of a table" },
    ...CONNECTION_FLAGS,
  },
  examples: [
    "deno task dlq list --table-name movie_ticket",
    "deno task dlq replay --table-name movie_ticket --reason BAD_EMAIL --all",
    "deno task dlq replay --id 17,18",
  ],
});

interface Letter {
  id: string;
  topic: string;
  partition: number;
  offset: string;
  reason: string;
  detail: string;
  target_table: string;
  received_at: Date;
  replayed_at: Date | null;
  message_key: Buffer | null;
  message_value: Buffer | null;
}

function preview(value: Buffer | null): string {
  if (!value) return "(null)";
  const text = value.toString("utf8").replace(/\s+/g, " ");
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** The ticket a cancellation letter cancels: its ticket_id, else its key. */
function cancelledTicketOf(letter: Letter): string | undefined {
  const parsed = parseMessage(letter.message_value);
  if (parsed.ok && parsed.message.type === "cancel") return parsed.message.ticket_id;
  return letter.message_key?.toString("utf8");
}

/**
 * Splits the letters chosen for replay (in offset order) into those to publish and the
 * UNKNOWN_TICKET letters to keep: a cancellation is published when its ticket is stored in the
 * letter's table now, or a letter keyed by that ticket (its purchase) is published before it.
 */
async function replayable(
  pool: Awaited<ReturnType<typeof createPool>>["pool"],
  schema: string,
  letters: Letter[],
): Promise<{ replay: Letter[]; kept: Letter[] }> {
  const wanted = new Map<string, string[]>();
  for (const r of letters) {
    const id = r.reason === UNKNOWN_TICKET ? cancelledTicketOf(r) : undefined;
    if (id !== undefined) wanted.set(r.target_table, [...wanted.get(r.target_table) ?? [], id]);
  }
  const stored = new Set<string>();
  for (const [table, ids] of wanted) {
    const { rows } = await pool.query<{ id: string }>(
      `SELECT ticket_id AS id FROM ${qualify({ schema, table }).tickets}
       WHERE ticket_id = ANY($1::text[])`,
      [ids],
    ).catch(() => ({ rows: [] })); // a table dropped since: nothing stored
    for (const r of rows) stored.add(`${table}\0${r.id}`);
  }
  const replay: Letter[] = [];
  const kept: Letter[] = [];
  for (const r of letters) {
    const id = r.reason === UNKNOWN_TICKET ? cancelledTicketOf(r) : undefined;
    if (id === undefined || stored.has(`${r.target_table}\0${id}`)) {
      replay.push(r);
      // a purchase replayed here comes before any later cancellation of its ticket
      if (r.reason !== UNKNOWN_TICKET && r.message_key) {
        stored.add(`${r.target_table}\0${r.message_key.toString("utf8")}`);
      }
    } else kept.push(r);
  }
  return { replay, kept };
}

/** Runs `dlq list` or `dlq replay`; returns the exit code. */
export async function deadLetters(args: string[]): Promise<number> {
  const action = args[0];
  if (action === "--help" || action === undefined) {
    parseCommandLine(DLQ_SPEC, ["--help"]);
    return action === undefined ? 2 : 0;
  }
  if (action !== "list" && action !== "replay") {
    throw new AppError("USAGE", `unknown action "${action}"; use: dlq list | dlq replay`);
  }
  const values = parseCommandLine(DLQ_SPEC, args.slice(1), {
    check: (values, problems) => {
      if (action === "replay" && values.id === undefined && !values.all) {
        problems.add(
          "replay needs --id LIST or --all (with optional --table-name/--reason filters)",
        );
      }
    },
  });
  if (!values) return 0;
  const { schema, limit, reason } = values;
  const table = values["table-name"];
  const ids = values.id?.split(",").map((s) => s.trim());
  const toTopic = values["to-topic"];

  const connection = resolveConnection(values, { postgres: true, kafka: action === "replay" });
  const q = qualify({ schema, table: table ?? "x" });
  const where: string[] = [];
  const params: unknown[] = [];
  if (table) where.push(`target_table = $${params.push(table)}`);
  if (reason) where.push(`reason = $${params.push(reason)}`);
  if (ids) where.push(`id = ANY($${params.push(ids)}::bigint[])`);
  if (action === "replay" && !values.again) where.push("replayed_at IS NULL");
  // LOST and SKIPPED letters mark offset ranges: they hold no message to replay
  if (action === "replay") where.push(`reason <> ALL($${params.push(MARKER_REASONS)})`);
  const db = await createPool({
    uri: connection.postgresUri,
    certPath: connection.kafka.certPath,
    max: 1,
    connectTimeoutMs: connection.connectTimeoutMs,
  });
  try {
    const { rows } = await db.pool.query<Letter>(
      `SELECT id, topic, partition, "offset", reason, detail, target_table, received_at, replayed_at, message_key, message_value
       FROM ${q.deadLetters} ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY ${
        action === "list" ? `id LIMIT ${limit}` : `topic, partition, "offset", id`
      }`,
      params,
    );
    if (action === "list") {
      for (const r of rows) {
        if (values.json) {
          console.log(
            JSON.stringify({
              ...r,
              message_key: r.message_key?.toString("base64") ?? null,
              message_value: r.message_value?.toString("base64") ?? null,
            }),
          );
        } else {
          console.log(
            `${r.id}\t${r.target_table}\t${r.topic}[${r.partition}]@${r.offset}\t${r.reason}\t${r.detail}\t${
              r.replayed_at ? "replayed" : ""
            }\t${preview(r.message_value)}`,
          );
        }
      }
      if (!values.json) console.error(`${rows.length} dead letter(s)`);
      return 0;
    }
    const { replay, kept } = await replayable(db.pool, schema, rows);
    if (kept.length > 0) {
      console.log(
        `dlq replay: kept ${kept.length} ${UNKNOWN_TICKET} letter(s) whose ticket is still not ` +
          `stored (replaying them would only refuse them again): ids ${
            kept.slice(0, 10).map((r) => r.id).join(", ")
          }${kept.length > 10 ? ", ..." : ""}`,
      );
    }
    if (replay.length === 0) {
      console.log("dlq replay: nothing to replay");
      return 0;
    }
    const kafka = createKafka(connection.kafka, { clientId: "tickets-dlq-replay" });
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    try {
      await withDeadline(
        producer.connect(),
        connection.connectTimeoutMs + 2_000,
        "connecting to Kafka",
      );
      const byTopic = new Map<string, Letter[]>();
      for (const r of replay) {
        const topic = toTopic ?? r.topic;
        byTopic.set(topic, [...(byTopic.get(topic) ?? []), r]);
      }
      for (const [topic, letters] of byTopic) {
        await producer.send({
          topic,
          acks: -1,
          messages: letters.map((r) => ({ key: r.message_key, value: r.message_value })),
        });
        await db.pool.query(
          `UPDATE ${q.deadLetters} SET replayed_at = now() WHERE id = ANY($1::bigint[])`,
          [letters.map((r) => r.id)],
        );
        console.log(`dlq replay: published ${letters.length} letter(s) again to ${topic}`);
      }
    } catch (error) {
      throw error instanceof AppError ? error : describeKafkaError(error, connection.kafka);
    } finally {
      await producer.disconnect().catch(() => {});
    }
    return 0;
  } finally {
    await db.pool.end();
  }
}
