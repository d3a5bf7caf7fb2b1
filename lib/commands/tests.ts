/**
 * The numbered test menu of the original project, each entry a real check against the configured
 * Kafka and PostgreSQL: 1 producer publishes (and the message is read back from the cluster),
 * 2 table creation, 3 table exists, 4 consumer stores, 5 data stored, 6 all, 7 exit.
 * @module
 */
import { createInterface } from "node:readline/promises";
import process from "node:process";
import { defineCommand, parseCommandLine } from "../cli/cli.ts";
import { type Connection, CONNECTION_FLAGS, resolveConnection } from "../config/config.ts";
import { runConsumer } from "../pipeline/consumer.ts";
import { setupDatabase } from "../postgres/setup.ts";
import { messageOf } from "../errors.ts";
import { createKafka, readTopicToEnd } from "../kafka/kafka.ts";
import { createPool } from "../postgres/postgres.ts";
import { runProducer } from "../pipeline/producer.ts";
import { OFFSETS_TABLE, qualify, quoteIdent } from "../postgres/schema.ts";
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
    "schema": {
      ...PIPELINE_FLAGS["schema"],
      description: "schema of the test table (created if missing)",
    },
    "keep": { type: "boolean", description: "keep the test topic and table afterwards" },
    ...CONNECTION_FLAGS,
  },
  examples: ["deno task tests", "deno task tests 6", "echo 6 | deno task tests"],
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
  produced: Map<string, Ticket>;
  tableCreated: boolean;
  /** Something was created in Kafka or PostgreSQL, so there is something to clean up. */
  touched: boolean;
}

type Check = (s: Session) => Promise<string>;

async function publishAndReadBack(s: Session): Promise<string> {
  s.touched = true;
  const sent: Ticket[] = [];
  await runProducer({
    kafka: s.connection.kafka,
    topic: s.topic,
    num: s.num,
    partitions: 3,
    onTicket: (t) => sent.push(t),
  });
  for (const t of sent) s.produced.set(t.ticket_id, t);
  // Read the topic back from the cluster and compare every ticket we sent.
  const seen = new Map<string, string>();
  await readTopicToEnd(
    createKafka(s.connection.kafka),
    s.topic,
    (_, message) => seen.set(message.key?.toString() ?? "", message.value?.toString() ?? ""),
    { clientId: "tickets-selftest-reader", timeoutMs: 30_000 },
  );
  for (const t of sent) {
    if (seen.get(t.ticket_id) !== JSON.stringify(t)) {
      throw new Error(`ticket ${t.ticket_id} read back differs from what was sent`);
    }
  }
  return `${sent.length} tickets published to ${s.topic} and read back identical`;
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
    maxMessages: s.produced.size,
  });
  const rows = await query<{ n: string }>(
    s,
    `SELECT count(*) AS n FROM ${qualify({ schema: s.schema, table: s.table }).tickets}`,
  );
  const count = Number(rows[0]?.n);
  if (count !== s.produced.size) {
    throw new Error(`table has ${count} rows; expected ${s.produced.size}`);
  }
  return `consumer stored ${summary.stored} new rows; table has ${count} (all published tickets)`;
}

async function dataStored(s: Session): Promise<string> {
  if (s.produced.size === 0) await consumerStores(s);
  const rows = await query<StoredTicket & { ticket_id: string }>(
    s,
    `SELECT ${STORED_TICKET_SELECT} FROM ${qualify({ schema: s.schema, table: s.table }).tickets}`,
  );
  const byId = new Map(rows.map((r) => [r.ticket_id, r]));
  for (const t of s.produced.values()) {
    const row = byId.get(t.ticket_id);
    if (!row) throw new Error(`ticket ${t.ticket_id} is missing from the table`);
    if (!sameTicket(row, t)) {
      throw new Error(`ticket ${t.ticket_id} is stored with different fields`);
    }
  }
  // and the whole topic against the whole table, as `deno task verify` does
  const report = await verifyPipeline({
    connection: s.connection,
    topic: s.topic,
    table: s.table,
    schema: s.schema,
  });
  if (!report.ok) {
    throw new Error(formatVerifyReport(report, s.topic, s.table).slice(2, 7).join("; "));
  }
  return `all ${s.produced.size} tickets stored with every field equal; verify: table matches topic`;
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
    await query(s, `DROP TABLE IF EXISTS ${q.tickets}, ${q.seats}, ${q.transactions}`);
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

/** Runs the menu; returns 0 when every check run passed. */
export async function selfTest(args: string[]): Promise<number> {
  const bare = args.filter((a) => /^\d+$/.test(a));
  const values = parseCommandLine(TESTS_SPEC, args.filter((a) => !/^\d+$/.test(a)));
  if (!values) return 0;
  const { num, schema } = values;
  const entryFlag = values.entry ?? bare[0];
  const id = crypto.randomUUID().slice(0, 8);
  const session: Session = {
    connection: resolveConnection(values, { kafka: true, postgres: true }),
    topic: `tickets_selftest_${id}`,
    table: `selftest_${id}`,
    schema,
    num,
    produced: new Map(),
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
