/**
 * The numbered test menu of the original project, each entry a real check against the configured
 * Kafka and PostgreSQL: 1 producer publishes (and the message is read back from the cluster),
 * 2 table creation, 3 table exists, 4 consumer stores, 5 data stored, 6 all, 7 exit. A share of
 * the tickets (`--cancel-rate`) is cancelled after its purchase, so the checks also see
 * cancellations land after their purchase, the consumer apply them, and cancelled tickets hold no
 * seat and have their payment refunded.
 * @module
 */
import { createInterface } from "node:readline/promises";
import process from "node:process";
import { COMMON_FLAGS, defineCommand, parseCommandLine } from "../cli/cli.ts";
import { type Connection, CONNECTION_FLAGS, resolveConnection } from "../config/config.ts";
import { runConsumer } from "../pipeline/consumer.ts";
import { setupDatabase } from "../postgres/setup.ts";
import { messageOf } from "../errors.ts";
import { createKafka, readTopicToEnd } from "../kafka/kafka.ts";
import { createPool } from "../postgres/postgres.ts";
import { runProducer } from "../pipeline/producer.ts";
import { OFFSETS_TABLE, PAID, qualify, quoteIdent, REFUNDED } from "../postgres/schema.ts";
import { parseMessage } from "../model/message.ts";
import {
  sameTicket,
  STORED_TICKET_SELECT,
  type StoredTicket,
  type Ticket,
} from "../model/columns.ts";
import { PIPELINE_FLAGS } from "./flags.ts";
import { formatVerifyReport, verifyPipeline } from "./verify.ts";

/** `tests.ts`. */
export const TESTS_SPEC = defineCommand({
  name: "tests",
  summary:
    "the pipeline's numbered self-test menu; give a number (or pipe one on stdin) to run without a prompt",
  flags: {
    "entry": {
      type: "string",
      description: "menu entry to run (1-7); also accepted as a bare number",
    },
    "num": {
      type: "integer",
      description: "tickets published by test 1",
      default: 10,
      min: 1,
      max: 100_000,
    },
    "cancel-rate": {
      type: "number",
      description: "share of test 1's tickets cancelled after their purchase (0: none)",
      default: 0.2,
      min: 0,
      max: 1,
    },
    "schema": {
      ...PIPELINE_FLAGS["schema"],
      description: "schema of the test table (created if missing)",
    },
    "keep": { type: "boolean", description: "keep the test topic and table afterwards" },
    ...CONNECTION_FLAGS,
  },
  examples: [
    "deno task tests",
    "deno task tests 6",
    "echo 6 | deno task tests",
    "deno task tests 6 --num 1000 --cancel-rate 0   (only purchases)",
  ],
});

/** The menu, in the original order. */
export const MENU = [
  "Test if the producer is able to publish messages to the Kafka topic",
  "Test for table creation in the database",
  "Test the table existence in PostgreSQL database",
  "Test if the consumer is able to subscribe and store the data to PostgreSQL database",
  "Test if the data is stored in the database",
  "Run all tests!",
  "Exit the Test suite!",
] as const;

interface Session {
  connection: Connection;
  topic: string;
  table: string;
  schema: string;
  num: number;
  cancelRate: number;
  produced: Map<string, Ticket>;
  /** The tickets test 1 cancelled (a cancel message each, after the purchase). */
  cancelled: Set<string>;
  /** Messages test 1 published: purchases and cancellations. */
  messages: number;
  tableCreated: boolean;
  /** Something was created in Kafka or PostgreSQL, so there is something to clean up. */
  touched: boolean;
}

type Check = (s: Session) => Promise<string>;

async function publishAndReadBack(s: Session): Promise<string> {
  s.touched = true;
  const sent: Ticket[] = [];
  const summary = await runProducer({
    kafka: s.connection.kafka,
    topic: s.topic,
    num: s.num,
    partitions: 3,
    cancelRate: s.cancelRate,
    onTicket: (t) => sent.push(t),
  });
  for (const t of sent) s.produced.set(t.ticket_id, t);
  s.messages = summary.sent;
  // Read the topic back from the cluster: every ticket we sent, identical; every cancellation
  // of one of them, after its purchase in the same partition.
  const seen = new Map<string, { value: string; partition: number; offset: bigint }>();
  const cancels: { id: string; partition: number; offset: bigint }[] = [];
  await readTopicToEnd(
    createKafka(s.connection.kafka),
    s.topic,
    (partition, message) => {
      const parsed = parseMessage(message.value);
      const offset = BigInt(message.offset);
      if (parsed.ok && parsed.message.type === "cancel") {
        cancels.push({ id: parsed.message.ticket_id, partition, offset });
      } else {
        const value = message.value?.toString() ?? "";
        seen.set(message.key?.toString() ?? "", { value, partition, offset });
      }
    },
    { clientId: "tickets-selftest-reader", timeoutMs: 30_000 },
  );
  for (const t of sent) {
    if (seen.get(t.ticket_id)?.value !== JSON.stringify(t)) {
      throw new Error(`ticket ${t.ticket_id} read back differs from what was sent`);
    }
  }
  for (const c of cancels) {
    const purchase = seen.get(c.id);
    if (!s.produced.has(c.id) || !purchase) {
      throw new Error(`cancellation of ${c.id}, a ticket that was not sent`);
    }
    if (purchase.partition !== c.partition || purchase.offset > c.offset) {
      throw new Error(
        `cancellation of ${c.id} at ${c.partition}@${c.offset} does not follow its purchase ` +
          `at ${purchase.partition}@${purchase.offset}`,
      );
    }
    s.cancelled.add(c.id);
  }
  if (s.messages !== sent.length + cancels.length) {
    throw new Error(`${s.messages} messages acknowledged, ${sent.length + cancels.length} read`);
  }
  return `${sent.length} tickets and ${cancels.length} cancellations published to ${s.topic} ` +
    `and read back identical (each cancellation after its purchase, in its partition)`;
}

async function query<T>(s: Session, text: string, params: unknown[] = []): Promise<T[]> {
  const db = await createPool({
    uri: s.connection.postgresUri,
    certPath: s.connection.kafka.certPath,
    max: 1,
    connectTimeoutMs: s.connection.connectTimeoutMs,
  });
  try {
    return (await db.pool.query(text, params)).rows as T[];
  } finally {
    await db.pool.end();
  }
}

async function createTable(s: Session): Promise<string> {
  s.touched = true;
  const name = await setupDatabase(s.connection, { schema: s.schema, table: s.table });
  s.tableCreated = true;
  return `created ${name}`;
}

async function tableExists(s: Session): Promise<string> {
  if (!s.tableCreated) await createTable(s);
  const rows = await query<{ t: string | null }>(s, "SELECT to_regclass($1)::text AS t", [
    qualify({ schema: s.schema, table: s.table }).tickets,
  ]);
  if (!rows[0]?.t) throw new Error(`table ${s.schema}.${s.table} not found`);
  return `table ${rows[0].t} exists`;
}

async function consumerStores(s: Session): Promise<string> {
  if (s.produced.size === 0) await publishAndReadBack(s);
  if (!s.tableCreated) await createTable(s);
  const summary = await runConsumer({
    schema: s.schema,
    connection: s.connection,
    topic: s.topic,
    table: s.table,
    idleTimeoutSeconds: 5,
    maxMessages: s.messages,
  });
  const [counts] = await query<{ n: number; cancelled: number }>(
    s,
    `SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'cancelled')::int AS cancelled
     FROM ${qualify({ schema: s.schema, table: s.table }).tickets}`,
  );
  const { n, cancelled } = counts ?? { n: 0, cancelled: 0 };
  if (n !== s.produced.size) throw new Error(`table has ${n} rows; expected ${s.produced.size}`);
  if (cancelled !== s.cancelled.size) {
    throw new Error(`table has ${cancelled} cancelled tickets; expected ${s.cancelled.size}`);
  }
  return `consumer stored ${summary.stored} new rows and applied ${summary.cancelled} ` +
    `cancellations; table has ${n} (all published tickets), ${cancelled} of them cancelled`;
}

interface StoredState {
  ticket_id: string;
  status: string;
  /** Seats the ticket holds in the seats table. */
  held: number;
  paid: string | null;
}

async function dataStored(s: Session): Promise<string> {
  if (s.produced.size === 0) await consumerStores(s);
  const q = qualify({ schema: s.schema, table: s.table });
  const rows = await query<StoredTicket & StoredState>(
    s,
    `SELECT ${STORED_TICKET_SELECT}, status,
       (SELECT count(*)::int FROM ${q.seats} x WHERE x.ticket_id = t.ticket_id) AS held,
       (SELECT p.status FROM ${q.transactions} p WHERE p.ticket_id = t.ticket_id) AS paid
     FROM ${q.tickets} t`,
  );
  const byId = new Map(rows.map((r) => [r.ticket_id, r]));
  for (const t of s.produced.values()) {
    const row = byId.get(t.ticket_id);
    if (!row) throw new Error(`ticket ${t.ticket_id} is missing from the table`);
    if (!sameTicket(row, t)) {
      throw new Error(`ticket ${t.ticket_id} is stored with different fields`);
    }
    const problem = s.cancelled.has(t.ticket_id)
      ? row.status !== "cancelled"
        ? `status ${row.status}, but it was cancelled`
        : row.held > 0
        ? `cancelled but holds ${row.held} seats`
        : row.paid !== REFUNDED
        ? `cancelled but its payment is ${row.paid ?? "missing"}, not ${REFUNDED}`
        : undefined
      : row.status !== "purchased"
      ? `status ${row.status}, but it was never cancelled`
      : row.held !== t.seats.length
      ? `holds ${row.held} of its ${t.seats.length} seats`
      : row.paid !== PAID
      ? `payment ${row.paid ?? "missing"}, not ${PAID}`
      : undefined;
    if (problem) throw new Error(`ticket ${t.ticket_id}: ${problem}`);
  }
  // and the whole topic against the whole table, as `deno task verify` does
  const report = await verifyPipeline({
    connection: s.connection,
    topic: s.topic,
    table: s.table,
    schema: s.schema,
  });
  if (!report.ok) {
    throw new Error(formatVerifyReport(report, s.topic, s.table).slice(2, 8).join("; "));
  }
  return `all ${s.produced.size} tickets stored with every field equal, ${s.cancelled.size} ` +
    `cancelled (seats freed, payments ${REFUNDED}); verify: table matches topic`;
}

const CHECKS: Check[] = [publishAndReadBack, createTable, tableExists, consumerStores, dataStored];

async function runEntry(s: Session, entry: number): Promise<boolean> {
  const entries = entry === 6 ? [1, 2, 3, 4, 5] : [entry];
  let ok = true;
  for (const n of entries) {
    try {
      const detail = await CHECKS[n - 1]!(s);
      console.log(`PASS ${n}. ${MENU[n - 1]}: ${detail}`);
    } catch (error) {
      ok = false;
      console.log(`FAIL ${n}. ${MENU[n - 1]}: ${messageOf(error)}`);
    }
  }
  return ok;
}

async function cleanup(s: Session): Promise<void> {
  try {
    const q = qualify({ schema: s.schema, table: s.table });
    await query(
      s,
      `DROP TABLE IF EXISTS ${q.tickets}, ${q.seats}, ${q.freedSeats}, ${q.transactions}`,
    );
    await query(s, `DELETE FROM ${quoteIdent(s.schema)}.${OFFSETS_TABLE} WHERE topic = $1`, [
      s.topic,
    ]).catch(
      () => {},
    );
  } catch { /* the table may never have been created */ }
  const admin = createKafka(s.connection.kafka, { retries: 1 }).admin();
  try {
    await admin.connect();
    if ((await admin.listTopics()).includes(s.topic)) {
      await admin.deleteTopics({ topics: [s.topic] });
    }
  } catch {
    /* nothing to delete */
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/**
 * Where the bare menu numbers are in `args` (`tests 6 --num 50`: 6 is one, 50 the value of
 * --num): a number that does not follow a flag taking a value.
 */
function bareEntries(args: string[]): number[] {
  const flags: Record<string, { type: string }> = { ...COMMON_FLAGS, ...TESTS_SPEC.flags };
  return args.flatMap((arg, i) => {
    if (!/^\d+$/.test(arg)) return [];
    const before = args[i - 1];
    const flag = before?.startsWith("--") && !before.includes("=")
      ? flags[before.slice(2)]
      : undefined;
    return flag && flag.type !== "boolean" ? [] : [i];
  });
}

/** Runs the menu; returns 0 when every check run passed. */
export async function selfTest(args: string[]): Promise<number> {
  const bare = bareEntries(args);
  const values = parseCommandLine(TESTS_SPEC, args.filter((_, i) => !bare.includes(i)));
  if (!values) return 0;
  const { num, schema } = values;
  const cancelRate = values["cancel-rate"];
  const entryFlag = values.entry ?? (bare.length ? args[bare[0]!] : undefined);
  const id = crypto.randomUUID().slice(0, 8);
  const session: Session = {
    connection: resolveConnection(values, { kafka: true, postgres: true }),
    topic: `tickets_selftest_${id}`,
    table: `selftest_${id}`,
    schema,
    num,
    cancelRate,
    produced: new Map(),
    cancelled: new Set(),
    messages: 0,
    tableCreated: false,
    touched: false,
  };
  let failed = false;
  const interactive = entryFlag === undefined && Deno.stdin.isTerminal();
  const rl = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: interactive,
  });
  try {
    const entries: string[] = entryFlag !== undefined ? [entryFlag] : [];
    for (;;) {
      if (entries.length === 0) {
        if (interactive) console.log(MENU.map((m, i) => `${i + 1}. ${m}`).join("\n"));
        const answer = interactive
          ? await rl.question("Choose a test (1-7): ")
          : await rl[Symbol.asyncIterator]().next().then((
            r,
          ) => (r.done ? undefined : r.value as string));
        if (answer === undefined) break;
        entries.push(answer.trim());
      }
      const text = entries.shift()!;
      const entry = Number(text);
      if (!/^[1-7]$/.test(text)) {
        console.log(`"${text}" is not on the menu: choose 1 to 7`);
        if (!interactive) {
          failed = true;
          break;
        }
        continue;
      }
      if (entry === 7) break;
      if (!(await runEntry(session, entry))) failed = true;
      if (!interactive) break;
    }
  } finally {
    rl.close();
    if (!values.keep && session.touched) await cleanup(session);
  }
  return failed ? 1 : 0;
}
