/**
 * Reconciles a topic with its table: reads the topic from its start to its current end, the table
 * and the dead letters, and reports what is missing, extra or different.
 * @module
 */
import { defineCommand, parseCommandLine } from "../cli/cli.ts";
import { type Connection, CONNECTION_FLAGS, resolveConnection } from "../config/config.ts";
import { defaultGroupId } from "../pipeline/consumer.ts";
import { checkKey } from "../pipeline/transform.ts";
import { LOST_REASON, MARKER_REASONS } from "../pipeline/sink.ts";
import { AppError } from "../errors.ts";
import { createKafka, describeKafkaError, readTopicToEnd, withDeadline } from "../kafka/kafka.ts";
import { DB_REJECTED } from "../pipeline/sink.ts";
import { createPool } from "../postgres/postgres.ts";
import { qualify, REFUNDED } from "../postgres/schema.ts";
import { rowKey, STORED_TICKET_SELECT, type StoredTicket, ticketKey } from "../model/columns.ts";
import { parseMessage, UNKNOWN_TICKET } from "../model/message.ts";
import { DEFAULT_SCHEMA, PIPELINE_FLAGS } from "./flags.ts";
import { checkManifest, formatManifestReport } from "../pipeline/manifest_check.ts";

/** `verify.ts`. */
export const VERIFY_SPEC = defineCommand({
  name: "verify",
  summary: "check that a table holds exactly the tickets of a topic (exit 1 on any mismatch)",
  flags: {
    "topic-name": {
      ...PIPELINE_FLAGS["topic-name"],
      description: "topic to read from its start to its end (not with --manifest)",
      required: false,
    },
    "manifest": {
      type: "string",
      description: "check every message of this producer manifest (producer --manifest) " +
        "against the database instead of reading the topic",
    },
    "table-name": { ...PIPELINE_FLAGS["table-name"], description: "ticket table to compare" },
    "schema": PIPELINE_FLAGS["schema"],
    "group-id": {
      ...PIPELINE_FLAGS["group-id"],
      description: "consumer group whose dead letters count",
    },
    "examples": {
      type: "integer",
      description: "ids listed per kind of mismatch",
      default: 10,
      min: 0,
      max: 1_000_000,
    },
    ...CONNECTION_FLAGS,
  },
  examples: [
    "deno task verify --topic-name movie_app --table-name movie_ticket",
    "deno task verify --manifest logs/manifest.jsonl --table-name movie_ticket",
  ],
});

/** What `verifyPipeline` found. */
export interface VerifyReport {
  messages: number;
  partitions: number;
  /** Distinct ticket ids among the purchases that parse. */
  tickets: number;
  /** Cancellations that parse. */
  cancels: number;
  /** Messages that are neither a purchase nor a cancellation. */
  notTickets: number;
  rows: number;
  /** Rows of cancelled tickets. */
  cancelled: number;
  deadLetters: number;
  /** Messages deleted from the log (retention) before the group read them (LOST markers). */
  lost: number;
  /** Messages skipped by `consumer --reset-offsets latest` (SKIPPED markers). */
  skipped: number;
  /** Valid tickets refused as a whole (e.g. SEAT_TAKEN) and recorded as dead letters. */
  refused: number;
  /** The refused tickets by dead-letter reason. */
  refusedByReason: Record<string, number>;
  /**
   * Messages that parse as a ticket yet became dead letters for a reason a valid ticket cannot
   * have (a sink bug): `ticket_id (REASON at partition@offset)`.
   */
  wronglyRefused: string[];
  missing: string[];
  extra: string[];
  mismatched: string[];
  /**
   * Tickets whose state disagrees with their cancellations: `id (reason)`, where the reason is
   * `not cancelled` (a cancellation in the topic was not applied nor refused), `cancelled without
   * a cancellation`, `cancelled but holds N seats` or `cancelled without a refund`.
   */
  cancelMismatches: string[];
  /** Offsets (`partition@offset`) of messages that are not tickets and not in the dead letters. */
  deadLettersMissing: string[];
  ok: boolean;
}

interface Seen {
  partition: number;
  offset: string;
  key: string;
  /** The message key is the ticket_id, as the consumer requires. */
  keyOk: boolean;
}

/**
 * Whether a message that parses as a ticket may be a dead letter for `reason`: its seat was sold
 * (SEAT_TAKEN), PostgreSQL refused a value (DB_REJECTED), or its key is not its ticket_id
 * (BAD_KEY, only when that is so). Any other reason means the sink refused a valid ticket.
 */
export function isRefusalOfValidTicket(reason: string, keyOk: boolean): boolean {
  return reason === "SEAT_TAKEN" || reason === DB_REJECTED || (reason === "BAD_KEY" && !keyOk);
}

/**
 * Whether a cancellation may be a dead letter for `reason`: its ticket was not stored before it
 * (UNKNOWN_TICKET), PostgreSQL refused it, or its key is not its ticket_id.
 */
export function isRefusalOfValidCancel(reason: string, keyOk: boolean): boolean {
  return reason === UNKNOWN_TICKET || reason === DB_REJECTED || (reason === "BAD_KEY" && !keyOk);
}

/**
 * Compares the cancellations of the topic with the tickets' status: a ticket with a cancellation
 * that is not a dead letter must be cancelled, and a cancelled ticket must have one. Cancellations
 * refused for a reason a valid one cannot have are added to `wronglyRefused`.
 */
function checkCancellations(
  cancelsById: Map<string, Seen[]>,
  deadReason: Map<string, string>,
  inTable: Set<string>,
  cancelledIds: Set<string>,
  wronglyRefused: string[],
): string[] {
  const found: string[] = [];
  for (const [id, seen] of cancelsById) {
    let applies = false;
    for (const s of seen) {
      const reason = deadReason.get(`${s.partition}@${s.offset}`);
      if (reason === undefined) applies = true;
      else if (!isRefusalOfValidCancel(reason, s.keyOk)) {
        wronglyRefused.push(`cancellation of ${id} (${reason} at ${s.partition}@${s.offset})`);
      }
    }
    if (applies && !cancelledIds.has(id)) {
      found.push(`${id} (${inTable.has(id) ? "not cancelled" : "cancelled but not stored"})`);
    }
  }
  for (const id of cancelledIds) {
    const applies = (cancelsById.get(id) ?? []).some((s) =>
      !deadReason.has(`${s.partition}@${s.offset}`)
    );
    if (!applies) found.push(`${id} (cancelled without a cancellation)`);
  }
  return found;
}

/** Cancelled tickets that still hold seats or whose payment is not refunded. */
async function cancelledState(
  pool: { query: (text: string) => Promise<{ rows: { id: string; problem: string }[] }> },
  q: ReturnType<typeof qualify>,
): Promise<string[]> {
  const result = await pool.query(
    `SELECT ticket_id AS id, 'cancelled but holds ' || count(*) || ' seats' AS problem
       FROM ${q.seats}
       WHERE ticket_id IN (SELECT ticket_id FROM ${q.tickets} WHERE status = 'cancelled')
       GROUP BY ticket_id
     UNION ALL
     SELECT t.ticket_id, 'cancelled without a refund'
       FROM ${q.tickets} t LEFT JOIN ${q.transactions} p USING (ticket_id)
       WHERE t.status = 'cancelled' AND p.status IS DISTINCT FROM '${REFUNDED}'
     ORDER BY 1`,
  );
  return result.rows.map((r) => `${r.id} (${r.problem})`);
}

/** Options of {@linkcode verifyPipeline}. */
export interface VerifyOptions {
  connection: Connection;
  topic: string;
  table: string;
  schema?: string;
  groupId?: string;
  /** Seconds allowed to read the topic. @default {300} */
  readTimeoutSeconds?: number;
}

/** What the topic holds: tickets and cancellations by id, the offsets of unparseable messages. */
interface TopicSide {
  byId: Map<string, Seen[]>;
  cancelsById: Map<string, Seen[]>;
  badOffsets: string[];
  messages: number;
  partitions: number;
}

/** Reads the whole topic once. */
async function readTopicSide(options: VerifyOptions): Promise<TopicSide> {
  const settings = options.connection.kafka;
  const kafka = createKafka(settings, { clientId: "tickets-verify" });
  const byId = new Map<string, Seen[]>();
  const cancelsById = new Map<string, Seen[]>();
  const badOffsets: string[] = [];
  let messages = 0;
  let partitions = 0;
  try {
    const admin = kafka.admin();
    await withDeadline(admin.connect(), settings.connectTimeoutMs + 2_000, "connecting to Kafka");
    const exists = await admin.listTopics().finally(() => admin.disconnect().catch(() => {}));
    if (!exists.includes(options.topic)) {
      throw new AppError("KAFKA", `topic "${options.topic}" does not exist`);
    }
    ({ partitions } = await readTopicToEnd(kafka, options.topic, (partition, m) => {
      messages++;
      const parsed = parseMessage(m.value);
      if (!parsed.ok) return void badOffsets.push(`${partition}@${m.offset}`);
      const keyOk = checkKey(parsed, m.key).ok;
      if (parsed.message.type === "cancel") {
        const id = parsed.message.ticket_id;
        cancelsById.set(id, [
          ...cancelsById.get(id) ?? [],
          { partition, offset: m.offset, key: "", keyOk },
        ]);
        return;
      }
      const ticket = parsed.message.ticket;
      const seen = byId.get(ticket.ticket_id) ?? [];
      seen.push({ partition, offset: m.offset, key: ticketKey(ticket), keyOk });
      byId.set(ticket.ticket_id, seen);
    }, { clientId: "tickets-verify", timeoutMs: (options.readTimeoutSeconds ?? 300) * 1000 }));
  } catch (error) {
    throw error instanceof AppError ? error : describeKafkaError(error, settings);
  }
  return { byId, cancelsById, badOffsets, messages, partitions };
}

/**
 * Sorts the topic's tickets that are not in the table: refused as a whole (every copy a dead
 * letter: counted by reason) or missing; and any dead letter a valid ticket cannot have is named
 * in `wronglyRefused`. Returns how many were refused.
 */
function judgeTickets(
  byId: Map<string, Seen[]>,
  inTable: Set<string>,
  deadReason: Map<string, string>,
  out: { wronglyRefused: string[]; missing: string[]; refusedByReason: Record<string, number> },
): number {
  let refused = 0;
  for (const [id, seen] of byId) {
    let wrong = false;
    for (const s of seen) {
      const reason = deadReason.get(`${s.partition}@${s.offset}`);
      if (reason === undefined || isRefusalOfValidTicket(reason, s.keyOk)) continue;
      out.wronglyRefused.push(`${id} (${reason} at ${s.partition}@${s.offset})`);
      wrong = true;
    }
    if (inTable.has(id) || wrong) continue;
    // a ticket refused as a whole (seat already sold) is a dead letter, not a loss
    const reasons = seen.map((s) => deadReason.get(`${s.partition}@${s.offset}`));
    if (reasons.every((r) => r !== undefined)) {
      refused++;
      out.refusedByReason[reasons[0]!] = (out.refusedByReason[reasons[0]!] ?? 0) + 1;
    } else out.missing.push(id);
  }
  return refused;
}

/** Reads topic, table and dead letters and compares them. */
export async function verifyPipeline(options: VerifyOptions): Promise<VerifyReport> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const q = qualify({ schema, table: options.table });
  const groupId = options.groupId ?? defaultGroupId(schema, options.table);
  const settings = options.connection.kafka;
  const { byId, cancelsById, badOffsets, messages, partitions } = await readTopicSide(options);

  const db = await createPool({
    uri: options.connection.postgresUri,
    certPath: settings.certPath,
    max: 1,
    connectTimeoutMs: options.connection.connectTimeoutMs,
  });
  const missing: string[] = [];
  const extra: string[] = [];
  const mismatched: string[] = [];
  let rows = 0;
  let cancelled = 0;
  const cancelMismatches: string[] = [];
  let deadLetters = 0;
  let lost = 0;
  let skipped = 0;
  let refused = 0;
  const refusedByReason: Record<string, number> = {};
  const wronglyRefused: string[] = [];
  const deadLettersMissing: string[] = [];
  try {
    const result = await db.pool.query<
      StoredTicket & {
        ticket_id: string;
        kafka_partition: number;
        kafka_offset: string;
        status: string;
      }
    >(`SELECT ${STORED_TICKET_SELECT}, kafka_partition, kafka_offset, status FROM ${q.tickets}`);
    rows = result.rows.length;
    const inTable = new Set<string>();
    for (const r of result.rows) {
      inTable.add(r.ticket_id);
      const seen = byId.get(r.ticket_id);
      if (!seen) {
        extra.push(r.ticket_id);
        continue;
      }
      const key = rowKey(r);
      const source = seen.find((s) =>
        s.partition === r.kafka_partition && s.offset === String(r.kafka_offset)
      );
      if (!source || source.key !== key) mismatched.push(r.ticket_id);
    }
    const dead = await db.pool.query<
      { partition: number; offset: string; reason: string; detail: string }
    >(
      `SELECT partition, "offset", reason, detail FROM ${q.deadLetters}
       WHERE group_id = $1 AND topic = $2`,
      [groupId, options.topic],
    );
    // LOST and SKIPPED letters mark offset ranges the consumer never read: no message's fate
    const markers = dead.rows.filter((d) => MARKER_REASONS.includes(d.reason));
    const letters = dead.rows.filter((d) => !MARKER_REASONS.includes(d.reason));
    for (const m of markers) {
      const count = Number(/\((\d+) messages\)/.exec(m.detail)?.[1] ?? 0);
      if (m.reason === LOST_REASON) lost += count;
      else skipped += count;
    }
    deadLetters = letters.length;
    const deadReason = new Map(letters.map((d) => [`${d.partition}@${d.offset}`, d.reason]));
    refused = judgeTickets(byId, inTable, deadReason, {
      wronglyRefused,
      missing,
      refusedByReason,
    });
    for (const bad of badOffsets) if (!deadReason.has(bad)) deadLettersMissing.push(bad);
    const cancelledIds = result.rows.filter((r) => r.status === "cancelled").map((r) =>
      r.ticket_id
    );
    cancelled = cancelledIds.length;
    cancelMismatches.push(
      ...checkCancellations(
        cancelsById,
        deadReason,
        inTable,
        new Set(cancelledIds),
        wronglyRefused,
      ),
      ...await cancelledState(db.pool, q),
    );
  } finally {
    await db.pool.end();
  }
  return {
    messages,
    partitions,
    tickets: byId.size,
    cancels: [...cancelsById.values()].reduce((n, seen) => n + seen.length, 0),
    notTickets: badOffsets.length,
    rows,
    cancelled,
    cancelMismatches,
    deadLetters,
    lost,
    skipped,
    refused,
    refusedByReason,
    wronglyRefused,
    missing,
    extra,
    mismatched,
    deadLettersMissing,
    ok: missing.length + extra.length + mismatched.length + deadLettersMissing.length +
        wronglyRefused.length + cancelMismatches.length === 0,
  };
}

/** The report as lines of text. */
export function formatVerifyReport(
  r: VerifyReport,
  topic: string,
  table: string,
  examples = 10,
): string[] {
  const list = (
    ids: string[],
  ) => (ids.length
    ? `: ${ids.slice(0, examples).join(", ")}${ids.length > examples ? ", ..." : ""}`
    : "");
  return [
    `topic ${topic}: ${r.messages} messages in ${r.partitions} partitions, ${r.tickets} distinct tickets, ${r.cancels} cancellations, ${r.notTickets} not tickets`,
    `table ${table}: ${r.rows} rows (${r.cancelled} cancelled); dead letters for this group and topic: ${r.deadLetters} (${r.refused} refused tickets${
      Object.entries(r.refusedByReason).sort().map(([reason, n]) => `, ${n} ${reason}`).join("")
    })`,
    `missing from the table: ${r.missing.length}${list(r.missing)}`,
    `in the table but not in the topic: ${r.extra.length}${list(r.extra)}`,
    `stored with different fields: ${r.mismatched.length}${list(r.mismatched)}`,
    `not tickets and not in dead letters: ${r.deadLettersMissing.length}${
      list(r.deadLettersMissing)
    }`,
    `valid tickets refused for a reason a valid ticket cannot have: ${r.wronglyRefused.length}${
      list(r.wronglyRefused)
    }`,
    `cancellations not reflected (not applied, no refund, seats kept): ${r.cancelMismatches.length}${
      list(r.cancelMismatches)
    }`,
    ...(r.lost || r.skipped
      ? [
        `never read by the consumer (not in the topic any more, or skipped): ${r.lost} deleted ` +
        `from the log before they were read, ${r.skipped} skipped by --reset-offsets latest`,
      ]
      : []),
    r.ok ? "verify: OK, the table matches the topic" : "verify: MISMATCH",
  ];
}

/** Runs `verify`; returns 0 when the table matches the topic, 1 otherwise. */
export async function verify(args: string[]): Promise<number> {
  const values = parseCommandLine(VERIFY_SPEC, args);
  if (!values) return 0;
  const topic = values["topic-name"];
  const table = values["table-name"];
  const schema = values.schema;
  if (values.manifest !== undefined) {
    const report = await checkManifest({
      connection: resolveConnection(values, { postgres: true }),
      path: values.manifest,
      table,
      schema,
      groupId: values["group-id"],
      examples: values.examples,
    });
    for (const line of formatManifestReport(report, values.manifest, `${schema}.${table}`)) {
      console.log(line);
    }
    return report.ok ? 0 : 1;
  }
  if (topic === undefined) throw new AppError("USAGE", "--topic-name is required (or --manifest)");
  const connection = resolveConnection(values, { kafka: true, postgres: true });
  const report = await verifyPipeline({
    connection,
    topic,
    table,
    schema,
    groupId: values["group-id"],
  });
  for (const line of formatVerifyReport(report, topic, `${schema}.${table}`, values.examples)) {
    console.log(line);
  }
  return report.ok ? 0 : 1;
}
