/**
 * `verify --manifest`: every message of a producer manifest checked against the database, a
 * chunk of entries at a time. A ticket to be stored must be in the table as purchased, from that
 * message (or from an earlier copy of it in the same partition, which a retried request leaves);
 * a ticket to be cancelled must be in the table as cancelled, hold no seat and have its payment
 * refunded; a dead letter must be recorded for the consumer's group at that topic, partition and
 * offset with that reason. A message whose ticket is stored or cancelled must not also be a dead
 * letter.
 * @module
 */
import type { Connection } from "../config/config.ts";
import { createPool } from "../postgres/postgres.ts";
import { qualify, REFUNDED } from "../postgres/schema.ts";
import { defaultGroupId } from "./consumer.ts";
import { type ManifestEntry, readManifest } from "./manifest.ts";

/** Options of {@linkcode checkManifest}. */
export interface ManifestCheckOptions {
  connection: Connection;
  /** The manifest file (`producer --manifest`). */
  path: string;
  table: string;
  /** @default {"public"} */
  schema?: string;
  /** The consumer group whose dead letters count. @default {defaultGroupId(schema, table)} */
  groupId?: string;
  /** Mismatches kept as examples. @default {10} */
  examples?: number;
}

/** What {@linkcode checkManifest} found. */
export interface ManifestReport {
  entries: number;
  /** Entries by expected outcome (stored, cancelled, dead letter reasons). */
  expected: Record<string, number>;
  mismatches: number;
  /** Mismatches by the entry's kind (purchase, cancel, poison kinds). */
  mismatchesByKind: Record<string, number>;
  /** The first mismatches, each naming the message and what differs. */
  examples: string[];
  ok: boolean;
}

/** A ticket as the check reads it: its status, source, payment status and whether it holds seats. */
export interface ManifestRow {
  ticket_id: string;
  status: string | null;
  kafka_topic: string;
  kafka_partition: number;
  kafka_offset: string;
  paid: string | null;
  holds_seats: boolean;
}

/** Checks a manifest against the database; never changes it. */
export async function checkManifest(options: ManifestCheckOptions): Promise<ManifestReport> {
  const schema = options.schema ?? "public";
  const q = qualify({ schema, table: options.table });
  const groupId = options.groupId ?? defaultGroupId(schema, options.table);
  const keep = options.examples ?? 10;
  const report: ManifestReport = {
    entries: 0,
    expected: {},
    mismatches: 0,
    mismatchesByKind: {},
    examples: [],
    ok: true,
  };
  const db = await createPool({
    uri: options.connection.postgresUri,
    certPath: options.connection.kafka?.certPath,
    max: 1,
    connectTimeoutMs: options.connection.connectTimeoutMs,
  });
  try {
    const [{ has_status }] = (await db.pool.query<{ has_status: boolean }>(
      `SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = $1::regclass
         AND attname = 'status' AND NOT attisdropped) AS has_status`,
      [q.tickets],
    )).rows as [{ has_status: boolean }];
    const ticketsSql = `SELECT t.ticket_id, ${has_status ? "t.status" : "NULL AS status"},
        t.kafka_topic, t.kafka_partition, t.kafka_offset::text AS kafka_offset,
        (SELECT p.status FROM ${q.transactions} p WHERE p.ticket_id = t.ticket_id) AS paid,
        EXISTS (SELECT FROM ${q.seats} s WHERE s.ticket_id = t.ticket_id) AS holds_seats
      FROM ${q.tickets} t WHERE t.ticket_id = ANY($1::text[])`;
    const lettersSql = `SELECT topic, partition, "offset"::text AS "offset", reason
      FROM ${q.deadLetters} WHERE group_id = $1 AND (topic, partition, "offset") IN
        (SELECT * FROM unnest($2::text[], $3::int[], $4::int8[]))`;
    const manifest = readManifest(options.path);
    for (let next = await manifest.next(); !next.done; next = await manifest.next()) {
      const entries = next.value;
      const ids = entries.filter((e) => e.expect !== "dead_letter" && e.key !== null)
        .map((e) => e.key!);
      const rows = new Map(
        (await db.pool.query<ManifestRow>(ticketsSql, [ids])).rows.map((r) => [r.ticket_id, r]),
      );
      const letters = new Map(
        (await db.pool.query<{ topic: string; partition: number; offset: string; reason: string }>(
          lettersSql,
          [
            groupId,
            entries.map((e) => e.topic),
            entries.map((e) => e.partition),
            entries.map((e) => e.offset),
          ],
        )).rows.map((d) => [`${d.topic}/${d.partition}@${d.offset}`, d.reason]),
      );
      for (const e of entries) {
        report.entries++;
        const label = e.expect === "dead_letter" ? e.reason! : e.expect;
        report.expected[label] = (report.expected[label] ?? 0) + 1;
        const letter = letters.get(`${e.topic}/${e.partition}@${e.offset}`);
        const problem = problemOf(e, e.key === null ? undefined : rows.get(e.key), letter);
        if (problem === undefined) continue;
        report.mismatches++;
        report.mismatchesByKind[e.kind] = (report.mismatchesByKind[e.kind] ?? 0) + 1;
        if (report.examples.length < keep) {
          report.examples.push(
            `${e.topic}/${e.partition}@${e.offset} ${e.kind} ${e.key ?? "(no key)"}: ` +
              `expected ${label}, ${problem}`,
          );
        }
      }
    }
  } finally {
    await db.pool.end();
  }
  report.ok = report.mismatches === 0;
  return report;
}

/** What is wrong with one entry, or undefined when the database agrees with it. */
export function problemOf(
  e: ManifestEntry,
  row: ManifestRow | undefined,
  letter: string | undefined,
): string | undefined {
  if (e.expect === "dead_letter") {
    if (letter === undefined) return "no dead letter at that offset";
    return letter === e.reason ? undefined : `dead letter ${letter}`;
  }
  if (letter !== undefined) return `a dead letter ${letter} at that offset`;
  if (!row) return "not in the table";
  if (row.status === null) return "the table has no status column (run db_setup)";
  if (e.expect === "stored") {
    if (row.status !== "purchased") return `status ${row.status}`;
    if (!row.holds_seats) return "stored but holds no seat";
    const offset = Number(row.kafka_offset);
    if (row.kafka_topic !== e.topic || row.kafka_partition !== e.partition || offset > e.offset) {
      return `stored from ${row.kafka_topic}/${row.kafka_partition}@${offset}`;
    }
    return undefined;
  }
  if (row.status !== "cancelled") return `status ${row.status}`;
  if (row.holds_seats) return "cancelled but still holds its seats";
  if (row.paid !== null && row.paid !== REFUNDED) return `payment ${row.paid}, not ${REFUNDED}`;
  return row.paid === null ? "no payment recorded" : undefined;
}

/** The report as lines of text. */
export function formatManifestReport(r: ManifestReport, path: string, table: string): string[] {
  const counts = (o: Record<string, number>) =>
    Object.entries(o).sort().map(([k, n]) => `${n} ${k}`).join(", ");
  return [
    `manifest ${path}: ${r.entries} messages (${counts(r.expected)})`,
    `table ${table}: ${r.mismatches} mismatches${
      r.mismatches ? ` (${counts(r.mismatchesByKind)})` : ""
    }`,
    ...r.examples.map((x) => `  ${x}`),
    ...(r.mismatches > r.examples.length
      ? [`  ... ${r.mismatches - r.examples.length} more (--examples N shows more)`]
      : []),
    r.ok ? "verify: OK, every outcome matches the manifest" : "verify: MISMATCH",
  ];
}
