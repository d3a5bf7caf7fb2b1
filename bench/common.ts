/**
 * Shared pieces of the benchmarks: progress lines, the connection to the local stack, a cleanup
 * scope that drops what a section created, subprocesses, peak-RSS sampling and ticket samples.
 * @module
 */
import { join } from "node:path";
import type { Connection } from "../lib/config/config.ts";
import type { SecurityProtocol } from "../lib/config/creds.ts";
import { resolveConnection } from "../lib/config/config.ts";
import { messageOf } from "../lib/errors.ts";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { setupDatabase } from "../lib/postgres/setup.ts";
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import { createPool, type Database } from "../lib/postgres/postgres.ts";
import {
  CONFLICTS_TABLE,
  DEAD_LETTERS_TABLE,
  OFFSETS_TABLE,
  qualify,
  quoteIdent,
} from "../lib/postgres/schema.ts";
import { deleteTopics, ROOT, stackCreds, stackInfo, writeStackCreds } from "../testing/testing.ts";
import type { Ticket } from "../lib/model/columns.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import { encodeTicket } from "../lib/model/ticket.ts";

export { ROOT };

/** Writes one progress line to stderr (stdout carries only the result table). */
export function progress(message: string): void {
  console.error(`bench: ${message}`);
}

/** Items per second, 0 when nothing was timed. */
export function perSecond(count: number, seconds: number): number {
  return seconds > 0 ? count / seconds : 0;
}

/** `ours / theirs`, or null when either side is missing or zero. */
export function ratio(ours: number | undefined, theirs: number | undefined): number | null {
  return ours && theirs ? ours / theirs : null;
}

/** Seconds elapsed while `work` runs, with its result. */
export async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { seconds: (performance.now() - started) / 1000, value };
}

/** Kafka and PostgreSQL of the local stack, plus a creds file for the scripts run as processes. */
export interface StackAccess {
  connection: Connection;
  /** Creds file (mode 600, in a temp folder) that `consumer.ts --creds` reads. */
  credsPath: string;
  /** Client cert folder: ca.pem, service.cert, service.key. */
  certPath: string;
  protocol: SecurityProtocol;
  /** `host:port` of the Kafka listener. */
  bootstrap: string;
}

/** Connects the benchmarks to the stack's `SSL` (client certificate) or `PLAINTEXT` listener. */
export async function stackAccess(protocol: SecurityProtocol = "SSL"): Promise<StackAccess> {
  const info = stackInfo();
  const credsPath = await writeStackCreds(stackCreds(protocol === "SSL" ? "SSL" : "PLAINTEXT"));
  const connection = resolveConnection({ creds: credsPath }, { kafka: true, postgres: true }, {
    get: () => undefined,
  });
  return {
    connection,
    credsPath,
    certPath: info.certPath,
    protocol,
    bootstrap: protocol === "SSL" ? info.kafka.ssl : info.kafka.plaintext,
  };
}

/** Removes the temp folder holding the creds file of {@linkcode stackAccess}. */
export async function releaseAccess(access: StackAccess): Promise<void> {
  await Deno.remove(join(access.credsPath, ".."), { recursive: true }).catch(() => {});
}

/** Opens a small pool on the stack's database (its sessions named `applicationName`). */
export function openDatabase(
  access: StackAccess,
  max = 4,
  applicationName = "tickets-bench",
): Promise<Database> {
  return createPool({
    uri: access.connection.postgresUri,
    certPath: access.certPath,
    max,
    applicationName,
  });
}

/**
 * Writes every dirty buffer out and starts a new WAL segment (CHECKPOINT, as the stack's
 * superuser), so that a timed write starts from the same database state as the one it is
 * compared with, not inheriting the previous one's backlog. False where no superuser URI is
 * known (then nothing is done).
 */
export async function checkpoint(access: StackAccess): Promise<boolean> {
  const uri = stackInfo().postgresAdminUri;
  if (!uri) {
    progress(
      "no superuser URI for this database: the next timed write starts without a CHECKPOINT",
    );
    return false;
  }
  const db = await createPool({ uri, certPath: access.certPath, max: 1 });
  try {
    await db.pool.query("CHECKPOINT");
    return true;
  } finally {
    await db.pool.end();
  }
}

/** The tables that belong to one ticket table (not the shared pipeline tables), qualified. */
export function ownTables(table: string): string[] {
  const shared = new Set(
    [OFFSETS_TABLE, DEAD_LETTERS_TABLE, CONFLICTS_TABLE].map((t) => `"public".${quoteIdent(t)}`),
  );
  return [...new Set(Object.values(qualify({ schema: "public", table })))].filter(
    (name) => !shared.has(name),
  );
}

type CleanupStep = { label: string; run: () => Promise<unknown> };
const openScopes = new Set<CleanupScope>();

/**
 * Collects what a section creates (topics, tables, offsets rows, files, processes) and removes it
 * in reverse order on `close()`, also when the run is interrupted.
 */
export class CleanupScope {
  readonly #steps: CleanupStep[] = [];

  constructor() {
    openScopes.add(this);
  }

  /** Registers one removal step. */
  add(label: string, run: () => Promise<unknown>): void {
    this.#steps.push({ label, run });
  }

  /** Deletes these topics at close. */
  topics(access: StackAccess, topics: string[]): void {
    this.add(`delete topics ${topics.join(", ")}`, () => deleteTopics(access.connection, topics));
  }

  /** Deletes these Kafka consumer groups at close (a group still in use is left alone). */
  groups(access: StackAccess, groupIds: string[]): void {
    this.add(`delete consumer groups ${groupIds.join(", ")}`, async () => {
      const admin = createKafka(access.connection.kafka, { retries: 1 }).admin();
      await admin.connect();
      try {
        await admin.deleteGroups(groupIds).catch(() => {});
      } finally {
        await admin.disconnect();
      }
    });
  }

  /**
   * Drops this ticket table with its own tables (seats, transactions, whatever `qualify` names
   * beside the shared ones) and its rows in the shared tables (offsets, dead letters, conflicts).
   */
  table(access: StackAccess, table: string, groupIds: string[] = []): void {
    this.add(`drop table ${table}`, async () => {
      const db = await openDatabase(access, 1);
      try {
        // Other people's tests share the database: never wait forever on one of their locks.
        await db.pool.query("SET lock_timeout = '30s'");
        await db.pool.query(`DROP TABLE IF EXISTS ${ownTables(table).join(", ")}`);
        await db.pool.query(
          `DELETE FROM public.${quoteIdent(OFFSETS_TABLE)} WHERE group_id = ANY($1::text[])`,
          [groupIds],
        );
        for (const shared of [DEAD_LETTERS_TABLE, CONFLICTS_TABLE]) {
          await db.pool.query(
            `DELETE FROM public.${quoteIdent(shared)} WHERE target_table = $1`,
            [table],
          );
        }
      } finally {
        await db.pool.end();
      }
    });
  }

  /** Runs every step, newest first; a failing step is reported and the others still run. */
  async close(): Promise<void> {
    openScopes.delete(this);
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step.run();
      } catch (error) {
        progress(`cleanup: could not ${step.label}: ${messageOf(error)}`);
      }
    }
  }
}

/** Closes every open scope (used when the run is interrupted). */
export async function closeAllScopes(): Promise<void> {
  for (const scope of [...openScopes].reverse()) await scope.close();
}

/** Creates a topic with the producer's default of 3 partitions, so a consumer can subscribe first. */
export async function createTopic(access: StackAccess, topic: string): Promise<void> {
  await ensureTopic(createKafka(access.connection.kafka), topic, 3);
}

/** Fresh topic and table named `bench_<what>_<suffix>`, removed when the scope closes. */
export async function freshPipeline(
  access: StackAccess,
  scope: CleanupScope,
  what: string,
  suffix: string,
  groupIds: string[] = [],
): Promise<string> {
  const name = benchName(what, suffix);
  const groups = [defaultGroupId("public", name), ...groupIds];
  scope.topics(access, [name]);
  scope.groups(access, groups);
  scope.table(access, name, groups);
  await setupDatabase(access.connection, { schema: "public", table: name });
  return name;
}

/** What a ticket table holds after a drain. */
export interface TableCounts {
  rows: number;
  distinctRows: number;
  /** Tickets refused as a whole (e.g. SEAT_TAKEN: a seat sold twice) and kept as dead letters. */
  refused: number;
}

/** Rows and distinct ticket ids in a table, and the dead letters recorded for it. */
export async function countRows(access: StackAccess, table: string): Promise<TableCounts> {
  const db = await openDatabase(access, 1);
  try {
    const res = await db.pool.query<{ rows: string; distinct_rows: string; refused: string }>(
      `SELECT count(*) AS rows, count(DISTINCT ticket_id) AS distinct_rows,
         (SELECT count(*) FROM public.${quoteIdent(DEAD_LETTERS_TABLE)} WHERE target_table = $1)
           AS refused
       FROM public.${quoteIdent(table)}`,
      [table],
    );
    const r = res.rows[0]!;
    return {
      rows: Number(r.rows),
      distinctRows: Number(r.distinct_rows),
      refused: Number(r.refused),
    };
  } finally {
    await db.pool.end();
  }
}

/** A table's rows and the span of their `stored_at`. */
export interface StoredSpan {
  rows: number;
  distinctRows: number;
  /** `stored_at` of the first and last row, ms since the epoch. */
  firstMs: number;
  lastMs: number;
}

/** `count(*)`, distinct ids and the first and last `stored_at` of a table. */
export async function storedSpan(access: StackAccess, table: string): Promise<StoredSpan> {
  const db = await openDatabase(access, 1);
  try {
    const { rows } = await db.pool.query<
      { rows: string; distinct_rows: string; first_ms: number | null; last_ms: number | null }
    >(
      `SELECT count(*) AS rows, count(DISTINCT ticket_id) AS distinct_rows,
         (extract(epoch FROM min(stored_at)) * 1000)::float8 AS first_ms,
         (extract(epoch FROM max(stored_at)) * 1000)::float8 AS last_ms
       FROM public.${quoteIdent(table)}`,
    );
    const r = rows[0]!;
    return {
      rows: Number(r.rows),
      distinctRows: Number(r.distinct_rows),
      firstMs: r.first_ms ?? 0,
      lastMs: r.last_ms ?? 0,
    };
  } finally {
    await db.pool.end();
  }
}

/** Output of a finished subprocess. */
export interface ProcessOutput {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a program to completion, capturing its output. */
export async function runProcess(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<ProcessOutput> {
  const started = performance.now();
  const out = await new Deno.Command(command, {
    args,
    cwd: options.cwd ?? ROOT,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return {
    code: out.code,
    stdout: decode(out.stdout),
    stderr: decode(out.stderr),
    seconds: (performance.now() - started) / 1000,
  };
}

/** The last non-empty lines of a text, for error messages. */
export function tail(text: string, lines = 5): string {
  return text.trim().split("\n").slice(-lines).join("\n");
}

/** Samples a process's peak resident set size (VmHWM) until `stop()`. */
export class PeakRssWatcher {
  #peakKiB = 0;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(readonly pid: number, intervalMs = 100) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    try {
      const status = Deno.readTextFileSync(`/proc/${this.pid}/status`);
      const kib = Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
      this.#peakKiB = Math.max(this.#peakKiB, kib);
    } catch {
      // the process has exited; keep the last reading
    }
  }

  /** Peak RSS seen so far, in MiB. */
  get peakMiB(): number {
    return this.#peakKiB / 1024;
  }

  /** Stops sampling; returns the peak in MiB. */
  stop(): number {
    clearInterval(this.#timer);
    return this.peakMiB;
  }
}

/** `count` generated tickets (seeded, so every baseline gets the same rows). */
export function sampleTickets(count: number, seed: number): Ticket[] {
  const generator = new TicketGenerator({ seed });
  return Array.from({ length: count }, () => generator.next());
}

/** Average size in bytes of a ticket's JSON as the producer publishes it. */
export function averageTicketBytes(sample = 10_000): number {
  const tickets = sampleTickets(sample, 7);
  const total = tickets.reduce((sum, t) => sum + encodeTicket(t).byteLength, 0);
  return Math.round(total / tickets.length);
}

/** A name for a topic or table: `bench_<what>_<suffix>`. */
export function benchName(what: string, suffix: string): string {
  return `bench_${what}_${suffix}`;
}

/** Process ids of the stack's broker and database, to notice a restart during a section. */
export function stackProcesses(): { kafka?: string; postgres?: string } {
  const read = (path: string) => {
    try {
      return Deno.readTextFileSync(join(ROOT, ".stack", path)).split("\n")[0]?.trim();
    } catch {
      return undefined;
    }
  };
  return { kafka: read("kafka/kafka.pid"), postgres: read("pg/data/postmaster.pid") };
}

/** Load averages of the machine (1, 5, 15 min), to spot runs disturbed by other work. */
export function loadAverage(): number[] {
  return Deno.loadavg().map((x) => Math.round(x * 100) / 100);
}
