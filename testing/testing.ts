/**
 * Test helpers: the local stack's settings, creds files in temp folders, unique names, SQL, and
 * running the scripts as processes. Used by `*_test.ts` and `e2e/`.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, stackInfo } from "../dev/stack_info.ts";
import { type Connection, resolveConnection } from "../lib/config/config.ts";
import { type Creds, writeCreds } from "../lib/config/creds.ts";
import { createKafka } from "../lib/kafka/kafka.ts";
import { createPool } from "../lib/postgres/postgres.ts";
import { setupDatabase } from "../lib/postgres/setup.ts";
import { type QualifiedNames, qualify } from "../lib/postgres/schema.ts";
import { type Batch, storedOffsets } from "../lib/pipeline/sink.ts";
import { consumerApplicationName } from "../lib/pipeline/consumer.ts";
import type { Ticket } from "../lib/model/columns.ts";
import { encodeTicket } from "../lib/model/ticket.ts";

export { ROOT, type StackInfo, stackInfo } from "../dev/stack_info.ts";

/** A short random suffix for test topics, tables and groups. */
export function uniqueSuffix(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 10);
}

/** Creds for the stack's SSL listener (client certificates). */
export function stackCreds(protocol: "SSL" | "PLAINTEXT" = "SSL"): Creds {
  const info = stackInfo();
  const [host, port] = (protocol === "SSL" ? info.kafka.ssl : info.kafka.plaintext).split(":");
  return {
    kafka: {
      hostname: host!,
      port: Number(port),
      securityProtocol: protocol,
      certPath: info.certPath,
    },
    postgres: { uri: info.postgresUri },
  };
}

/** Writes stack creds (mode 600) into a fresh temp folder; returns the file's path. */
export async function writeStackCreds(creds: Creds = stackCreds()): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tickets-test-" });
  const path = join(dir, "creds.json");
  await writeCreds(path, creds);
  return path;
}

/** Resolved connection to the stack over SSL. */
export async function stackConnection(): Promise<Connection> {
  return resolveConnection({ creds: await writeStackCreds() }, { kafka: true, postgres: true }, {
    get: () => undefined,
  });
}

/** The offsets the stack's database stores for a group on a topic, by partition (the sink's read). */
export async function storedGroupOffsets(
  q: QualifiedNames,
  groupId: string,
  topic: string,
): Promise<Map<number, bigint>> {
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 1 });
  try {
    return await storedOffsets(db.pool, q, groupId, topic);
  } finally {
    await db.pool.end();
  }
}

/** Runs one SQL statement against the stack's database. */
export async function sql<T = Record<string, unknown>>(
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 1 });
  try {
    return (await db.pool.query(text, params)).rows as T[];
  } finally {
    await db.pool.end();
  }
}

/**
 * Removes what a pipeline test left in the stack's database: the ticket table with its seats and
 * transactions tables, and the table's dead letters, conflicts and stored offsets (of groups
 * whose id contains the table name, as every test's group does).
 */
export async function dropPipeline(table: string, schema = "public"): Promise<void> {
  const q = qualify({ schema, table });
  await sql(`DROP TABLE IF EXISTS ${q.tickets}, ${q.seats}, ${q.freedSeats}, ${q.transactions}`);
  await sql(`DELETE FROM ${q.deadLetters} WHERE target_table = $1`, [table]).catch(() => {});
  await sql(`DELETE FROM ${q.conflicts} WHERE target_table = $1`, [table]).catch(() => {});
  await sql(`DELETE FROM ${q.offsets} WHERE group_id LIKE $1`, [`%${table}%`]).catch(() => {});
}

/** What {@linkcode withPipeline} hands a test: a fresh topic name, table and their settings. */
export interface PipelineCase {
  connection: Connection;
  /** Topic and table share one unique name. */
  topic: string;
  table: string;
  q: QualifiedNames;
}

/**
 * Runs `fn` with a unique topic/table name (`<prefix>_<suffix>`) whose tables `db_setup` has made
 * in `public`; afterwards, whatever happened, drops the tables (with their dead letters, conflicts
 * and offsets) and deletes the topic.
 */
export async function withPipeline(
  prefix: string,
  fn: (c: PipelineCase) => Promise<void>,
): Promise<void> {
  const connection = await stackConnection();
  const name = `${prefix}_${uniqueSuffix()}`;
  await setupDatabase(connection, { schema: "public", table: name });
  try {
    await fn({
      connection,
      topic: name,
      table: name,
      q: qualify({ schema: "public", table: name }),
    });
  } finally {
    await dropPipeline(name);
    await deleteTopics(connection, [name]);
  }
}

/** Deletes topics (ignores ones that do not exist). */
export async function deleteTopics(connection: Connection, topics: string[]): Promise<void> {
  const admin = createKafka(connection.kafka, { retries: 1 }).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const doomed = topics.filter((t) => existing.has(t));
    if (doomed.length) await admin.deleteTopics({ topics: doomed });
  } finally {
    await admin.disconnect();
  }
}

/** Result of a script run as a process. */
export interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a top-level script (e.g. `producer.ts`) with `deno run -A`, returning exit code and output. */
export async function runScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<ScriptResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, script), ...args],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** Starts a top-level script as a child process (for signal tests). */
export function spawnScript(script: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, script), ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Runs a shell command (openssl, ...) and returns its stdout; throws on failure. */
export async function sh(command: string, cwd?: string): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: ["-c", command],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`${command} failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

/**
 * Writes a cert folder whose client certificate is signed by the stack's CA with the given
 * validity (`YYYYMMDDHHMMSSZ` dates), for expiry tests. Returns the folder.
 */
export async function certFolderWithValidity(startdate: string, enddate: string): Promise<string> {
  const ca = join(ROOT, ".stack/certs");
  const dir = await Deno.makeTempDir({ prefix: "tickets-certs-" });
  await Deno.writeTextFile(
    join(dir, "ca.cnf"),
    `[ca]\ndefault_ca=d\n[d]\ndatabase=${dir}/index.txt\nnew_certs_dir=${dir}\nserial=${dir}/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n`,
  );
  await sh(
    `touch index.txt && echo 01 > serial && cp ${ca}/ca.pem ca.pem &&
     openssl genrsa -out service.key 2048 2>/dev/null && chmod 600 service.key &&
     openssl req -new -key service.key -subj /CN=avnadmin -out c.csr 2>/dev/null &&
     openssl ca -batch -config ca.cnf -cert ${ca}/ca.pem -keyfile ${ca}/ca.key -in c.csr -out service.cert -notext -startdate ${startdate} -enddate ${enddate} 2>/dev/null`,
    dir,
  );
  return dir;
}

/** Runs `bash dev/stack.sh ACTION PART` (fault injection: stop or start one service). */
export async function stack(action: "up" | "down", part: "kafka" | "postgres"): Promise<void> {
  const out = await new Deno.Command("bash", {
    args: [join(ROOT, "dev/stack.sh"), action, part],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`stack ${action} ${part} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Polls `check` every 100 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Counts of a consumer run as its summary line prints them. */
export interface ConsumerCounts {
  received: number;
  stored: number;
  duplicates: number;
  conflicts: number;
  deadLetters: number;
  /** Batches dropped because another member had moved the stored offset. */
  fenced: number;
  /** Messages deleted from the log before they were read (0 when not printed). */
  lost: number;
  /** The whole summary line. */
  line: string;
}

/** Reads the consumer's summary line (`consumed N messages ...`) from its stdout; throws if absent. */
export function consumerCounts(stdout: string): ConsumerCounts {
  const line = /^consumed \d+ messages.*$/m.exec(stdout)?.[0];
  if (!line) throw new Error(`no consumer summary line in:\n${stdout}`);
  const count = (label: string) => {
    const match = new RegExp(`\\b${label} (\\d+)`).exec(line);
    if (!match) throw new Error(`the summary line has no "${label}": ${line}`);
    return Number(match[1]);
  };
  return {
    received: count("consumed"),
    stored: count("stored"),
    duplicates: count("duplicates"),
    conflicts: count("conflicts"),
    deadLetters: count("dead letters"),
    fenced: count("fenced"),
    lost: Number(/\blost before read (\d+)/.exec(line)?.[1] ?? 0),
    line,
  };
}

/** Where a test pipeline's consumer reads and writes. */
export interface ConsumerTarget {
  creds: string;
  topic: string;
  table: string;
}

/** Arguments of `consumer.ts` for a test pipeline (no metrics file), followed by `extra`. */
export function consumerArgs(target: ConsumerTarget, ...extra: string[]): string[] {
  return [
    "--creds",
    target.creds,
    "--topic-name",
    target.topic,
    "--table-name",
    target.table,
    "--no-metrics-log",
    ...extra,
  ];
}

/**
 * Waits until no database session of a consumer group is left (a killed consumer's sessions end
 * when PostgreSQL notices the closed socket; until then a commit may still be in flight).
 */
export async function waitForSessionsGone(groupId: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(`the sessions of ${groupId} to end`, async () => {
    const [row] = await sql<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`,
      [consumerApplicationName(groupId)],
    );
    return row!.n === 0;
  }, timeoutMs);
}

/** Collects a child's output while it runs; `text()` gives what arrived so far. */
export function collect(
  child: Deno.ChildProcess,
): { stdout: () => string; stderr: () => string; done: Promise<Deno.CommandStatus> } {
  let out = "";
  let err = "";
  const pump = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) add(chunk);
  };
  const pumps = Promise.all([
    pump(child.stdout, (s) => (out += s)),
    pump(child.stderr, (s) => (err += s)),
  ]);
  return { stdout: () => out, stderr: () => err, done: pumps.then(() => child.status) };
}

/**
 * Produces `[key, value]` messages with kcat, a client independent of this project, to the
 * stack's plaintext listener (keys and values must hold no tab or newline). Partition 0 unless
 * `partition` is given, so tests know the order; record batches compressed with `compression`.
 */
export async function kcatProduce(
  topic: string,
  messages: [string, string][],
  partition = 0,
  compression: "none" | "gzip" | "snappy" | "lz4" | "zstd" = "none",
): Promise<void> {
  const child = new Deno.Command("kcat", {
    args: [
      "-b",
      stackInfo().kafka.plaintext,
      "-P",
      "-t",
      topic,
      "-K",
      "\t",
      "-p",
      String(partition),
      "-z",
      compression,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(messages.map(([k, v]) => `${k}\t${v}\n`).join("")));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`kcat failed: ${new TextDecoder().decode(out.stderr)}`);
}

/**
 * A batch of `tickets` for the sink's tests: partition 0 of `topic`, offsets from `from` on, the
 * group `g_<table>`, no dead letters.
 */
export function ticketBatch(table: string, from: bigint, tickets: Ticket[], topic = "t"): Batch {
  return {
    groupId: `g_${table}`,
    table,
    topic,
    partition: 0,
    expectedOffset: from,
    nextOffset: from + BigInt(tickets.length),
    rows: tickets.map((ticket, i) => ({
      ticket,
      offset: String(from + BigInt(i)),
      value: encodeTicket(ticket),
    })),
    deadLetters: [],
  };
}

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** One partition's line of `ConsumerGroupCommand --describe`. */
export interface GroupRow {
  partition: number;
  /** The group's committed offset; undefined when it has none ("-"). */
  current: bigint | undefined;
  logEnd: bigint;
  lag: string;
}

/** Kafka's view of the group's offsets on `topic`, by ConsumerGroupCommand. */
export async function describeGroup(groupId: string, topic: string): Promise<GroupRow[]> {
  const out = await new Deno.Command("bash", {
    args: [
      join(ROOT, "dev/stack.sh"),
      "tool",
      "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
      "--bootstrap-server",
      stackInfo().kafka.plaintext,
      "--describe",
      "--group",
      groupId,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `ConsumerGroupCommand failed: ${new TextDecoder().decode(out.stderr)}`);
  return text.split("\n").map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols[1] === topic)
    .map((cols) => ({
      partition: Number(cols[2]),
      current: cols[3] === "-" ? undefined : BigInt(cols[3]!),
      logEnd: BigInt(cols[4]!),
      lag: cols[5]!,
    }))
    .sort((a, b) => a.partition - b.partition);
}
