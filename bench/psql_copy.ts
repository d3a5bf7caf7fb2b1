/**
 * `psql \copy`, the database's practical limit for our rows: timed loads of CSV files into the
 * columns the sink writes (psql's own `\timing`, process start and connection excluded) and the
 * export of a drained table's rows to such files.
 * @module
 */
import { join } from "node:path";
import { parsePostgresUri } from "../lib/config/postgres_uri.ts";
import {
  PAYMENT_WRITE_COLUMNS,
  qualify,
  SEAT_WRITE_COLUMNS,
  TICKET_WRITE_COLUMNS,
} from "../lib/postgres/schema.ts";
import { openDatabase, runProcess, type StackAccess, tail } from "./common.ts";
import { backendsNamed, CpuWatcher } from "./cpu.ts";

/** One CSV file and where it goes. */
export interface CopyFile {
  /** Qualified table name. */
  table: string;
  columns: readonly string[];
  csv: string;
}

/** What a timed load took. */
export interface CopyTiming {
  /** Sum of psql's `\timing` of the copies. */
  seconds: number;
  /** CPU of the PostgreSQL backend that ran them; undefined where /proc cannot be read. */
  serverCpuSeconds?: number;
  /** psql's whole run, start and connection included. */
  wallSeconds: number;
}

/**
 * The three files of a ticket table's rows (tickets, seats, payments, in that order) in `dir`,
 * for {@linkcode timedCopies} into `table`'s tables.
 */
export function copyFiles(table: string, dir: string): CopyFile[] {
  const q = qualify({ schema: "public", table });
  return [
    { table: q.tickets, columns: TICKET_WRITE_COLUMNS, csv: join(dir, "tickets.csv") },
    { table: q.seats, columns: SEAT_WRITE_COLUMNS, csv: join(dir, "seats.csv") },
    { table: q.transactions, columns: PAYMENT_WRITE_COLUMNS, csv: join(dir, "payments.csv") },
  ];
}

/** Loads the files with `\copy ... FROM file WITH (FORMAT csv)` on one psql connection. */
export async function timedCopies(
  access: StackAccess,
  applicationName: string,
  files: CopyFile[],
): Promise<CopyTiming> {
  const copies = files.map((f) =>
    `\\copy ${f.table} (${f.columns.join(", ")}) FROM '${f.csv}' WITH (FORMAT csv)`
  );
  const watchDb = await openDatabase(access, 1);
  try {
    const cpu = new CpuWatcher({ server: backendsNamed(watchDb, applicationName) });
    const out = await runProcess(
      "psql",
      [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        "\\timing on",
        ...copies.flatMap((c) => ["-c", c]),
      ],
      { env: { ...psqlEnvironment(access), PGAPPNAME: applicationName } },
    );
    const serverCpuSeconds = (await cpu.stop()).seconds.server;
    const times = [...out.stdout.matchAll(/Time: ([\d.]+) ms/g)].map((m) => Number(m[1]));
    if (out.code !== 0 || times.length !== copies.length) {
      throw new Error(
        `psql \\copy failed (exit ${out.code}): ${tail(out.stderr || out.stdout, 3)}`,
      );
    }
    return {
      seconds: times.reduce((a, b) => a + b, 0) / 1000,
      serverCpuSeconds,
      wallSeconds: out.seconds,
    };
  } finally {
    await watchDb.pool.end();
  }
}

/**
 * Writes the rows stored in `table`'s three tables to `files` (from {@linkcode copyFiles}), in
 * their stored order: the same rows, to load again elsewhere.
 */
export async function exportRows(
  access: StackAccess,
  table: string,
  files: CopyFile[],
): Promise<void> {
  const q = qualify({ schema: "public", table });
  const sources = [q.tickets, q.seats, q.transactions];
  const exports = files.map((f, i) =>
    `\\copy (SELECT ${f.columns.join(", ")} FROM ${sources[i]}) TO '${f.csv}' WITH (FORMAT csv)`
  );
  const out = await runProcess(
    "psql",
    ["-X", "-q", "-v", "ON_ERROR_STOP=1", ...exports.flatMap((c) => ["-c", c])],
    { env: psqlEnvironment(access) },
  );
  if (out.code !== 0) {
    throw new Error(`psql \\copy TO failed (exit ${out.code}): ${tail(out.stderr, 3)}`);
  }
}

/** libpq environment for psql: the password travels in PGPASSWORD, never on the command line. */
export function psqlEnvironment(access: StackAccess): Record<string, string> {
  const target = parsePostgresUri(access.connection.postgresUri);
  return {
    PGHOST: target.host,
    PGPORT: String(target.port),
    PGUSER: target.user,
    PGPASSWORD: target.password ?? "",
    PGDATABASE: target.database,
    PGSSLMODE: target.sslmode === "disable" ? "disable" : "require",
    PGSSLROOTCERT: target.sslrootcert ?? join(access.certPath, "ca.pem"),
  };
}
