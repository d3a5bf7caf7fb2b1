/**
 * Database objects of the pipeline: identifier checks and quoting, and the DDL of the ticket
 * table, the consumer-offsets table and the dead-letter table (all in one schema).
 * @module
 */
import { AppError } from "../errors.ts";
import { showIdSql, TICKET_COLUMN_NAMES, ticketColumnsDdl } from "../model/columns.ts";
import { cancelColumnsDdl, TICKET_STATUSES } from "../model/message.ts";

/** Lower-case letters, digits and `_`, starting with a letter or `_`, at most 63 bytes. */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** Checks a table or schema name against the strict pattern; throws USAGE when it does not fit. */
export function checkIdentifier(kind: string, name: string): string {
  if (!IDENTIFIER.test(name)) {
    throw new AppError(
      "USAGE",
      `${kind} "${
        name.slice(0, 80)
      }" is not allowed: use 1-63 lower-case letters, digits or _, starting with a letter or _`,
    );
  }
  return name;
}

/** Double-quotes an identifier (after checking it). */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * A string as an SQL literal, right whatever `standard_conforming_strings` says: quotes doubled,
 * and a text with a backslash written as an `E''` string with its backslashes doubled. A NUL,
 * which no PostgreSQL text holds, is refused.
 */
export function quoteLiteral(text: string): string {
  if (text.includes("\0")) throw new AppError("BAD_INPUT", "a text for PostgreSQL holds a NUL");
  const quoted = `'${text.replaceAll("'", "''")}'`;
  return text.includes("\\") ? `E${quoted.replaceAll("\\", "\\\\")}` : quoted;
}

/** Where the pipeline's tables live. */
export interface TableNames {
  schema: string;
  table: string;
}

/** Fully qualified, quoted names of the pipeline's tables. */
export interface QualifiedNames {
  tickets: string;
  /** One row per sold seat, unique per show. */
  seats: string;
  /** The seats cancelled tickets held, to judge a purchase as of its position (see README). */
  freedSeats: string;
  /** One payment transaction per ticket. */
  transactions: string;
  offsets: string;
  deadLetters: string;
  conflicts: string;
}

/**
 * Columns of the ticket table that say where a row came from (the message's columns are the
 * model's, see model/columns.ts); the sink writes the first four.
 */
const SOURCE_COLUMNS_DDL = [
  "kafka_topic text NOT NULL",
  "kafka_partition integer NOT NULL",
  "kafka_offset bigint NOT NULL",
  "published_at timestamptz",
  "stored_at timestamptz NOT NULL DEFAULT clock_timestamp()",
];

/** The names of the columns some column definitions (`name type ...`) define. */
const namesOf = (ddl: readonly string[]): string[] => ddl.map((d) => d.split(" ")[0]!);

/** The source columns the sink writes, in its order: topic, partition, offset, publish time. */
const SOURCE_COLUMN_NAMES: readonly string[] = namesOf(SOURCE_COLUMNS_DDL.slice(0, 4));

/** The ticket table's columns the sink writes, in its order: the model's, then the source's. */
export const TICKET_WRITE_COLUMNS: readonly string[] = [
  ...TICKET_COLUMN_NAMES,
  ...SOURCE_COLUMN_NAMES,
];

/** The seats table's columns, in the order the sink writes them. */
export const SEAT_WRITE_COLUMNS: readonly string[] = ["show_id", "seat", "ticket_id"];

/** The payments table's columns the sink writes, in its order (status and refunds keep defaults). */
export const PAYMENT_WRITE_COLUMNS: readonly string[] = [
  "ticket_id",
  "amount",
  "currency",
  "created_at",
  "transaction_id",
];

/**
 * Columns of the ticket table that say where a ticket stands: `status` (`purchased` until a
 * cancellation applies, then `cancelled`), then the cancellation's own columns from the message
 * model (cancelled_at, cancel_reason; NULL while purchased) and where that cancellation was read
 * (cancel_topic, cancel_partition, cancel_offset). They are not fields of the purchase
 * message, so they stay out of the ticket's column spec (its parser, COPY line, insert and
 * equality rule): a purchase is written without them and gets the defaults.
 */
export const STATE_COLUMNS_DDL: readonly string[] = [
  `status text NOT NULL DEFAULT '${TICKET_STATUSES[0]}' CHECK (status IN (${
    TICKET_STATUSES.map((s) => `'${s}'`).join(", ")
  }))`,
  ...cancelColumnsDdl(),
  // a purchase before the cancellation in its partition finds the ticket's seats held, one
  // after it finds them free
  "cancel_topic text",
  "cancel_partition integer",
  "cancel_offset bigint",
];

/**
 * Statements that read no row but name every table and column the pipeline's writes use: they
 * fail (42P01, 42703) on tables an older version made, before `db_setup` ran again.
 */
export function schemaProbe(names: TableNames): string {
  const q = qualify(names);
  const uses: [string, readonly string[]][] = [
    [q.tickets, [...TICKET_WRITE_COLUMNS, ...namesOf(STATE_COLUMNS_DDL)]],
    [q.seats, SEAT_WRITE_COLUMNS],
    [q.freedSeats, SEAT_WRITE_COLUMNS],
    [q.transactions, [...PAYMENT_WRITE_COLUMNS, "status", "refunded_at"]],
    [q.offsets, ["group_id", "topic", "partition", "next_offset", "write_id", "write_counts"]],
    [q.deadLetters, ["group_id", "offset", "reason", "replayed_at"]],
    [q.conflicts, ["target_table", "offset", "message_value"]],
  ];
  return uses.map(([table, columns]) =>
    `SELECT ${columns.map(quoteIdent).join(", ")} FROM ${table} LIMIT 0`
  ).join(";\n");
}

/** Payment status of a ticket's transaction while it stands. */
export const PAID = "PAID";
/** Payment status once its ticket is cancelled: the refund (time in `refunded_at`). */
export const REFUNDED = "REFUNDED";

/** Name of the offsets table shared by every pipeline in a schema. */
export const OFFSETS_TABLE = "pipeline_offsets";
/** Name of the dead-letter table shared by every pipeline in a schema. */
export const DEAD_LETTERS_TABLE = "pipeline_dead_letters";
/** Name of the table of ticket ids seen again with different content. */
export const CONFLICTS_TABLE = "pipeline_conflicts";

/** Checks the names and returns the quoted, schema-qualified table names. */
export function qualify(names: TableNames): QualifiedNames {
  const schema = quoteIdent(checkIdentifier("schema name", names.schema));
  const table = quoteIdent(checkIdentifier("table name", names.table));
  return {
    tickets: `${schema}.${table}`,
    seats: `${schema}.${quoteIdent(`${names.table}_seats`)}`,
    freedSeats: `${schema}.${quoteIdent(`${names.table}_freed_seats`)}`,
    transactions: `${schema}.${quoteIdent(`${names.table}_transactions`)}`,
    offsets: `${schema}.${quoteIdent(OFFSETS_TABLE)}`,
    deadLetters: `${schema}.${quoteIdent(DEAD_LETTERS_TABLE)}`,
    conflicts: `${schema}.${quoteIdent(CONFLICTS_TABLE)}`,
  };
}

/**
 * Seats tables made before the show key (keyed by theater, movie, showtime and seat) get the key
 * computed from those columns, which then go: the show is the ticket's, found by ticket_id.
 */
function migrateSeatsToShowId(names: TableNames, seats: string): string {
  const table = quoteLiteral(`${names.table}_seats`);
  return `DO $migrate$ BEGIN
      IF EXISTS (SELECT FROM information_schema.columns WHERE table_schema = ${
    quoteLiteral(names.schema)
  }
          AND table_name = ${table} AND column_name = 'theater') THEN
        ALTER TABLE ${seats} ADD COLUMN show_id uuid;
        UPDATE ${seats} SET show_id = ${showIdSql("theater", "movie", "showtime")};
        ALTER TABLE ${seats} ALTER COLUMN show_id SET NOT NULL,
          DROP COLUMN theater, DROP COLUMN movie, DROP COLUMN showtime,
          ADD PRIMARY KEY (show_id, seat);
      END IF;
    END $migrate$`;
}

/** The DDL statements (idempotent) that create the schema and all pipeline tables. */
export function schemaStatements(names: TableNames): string[] {
  const q = qualify(names);
  const schema = quoteIdent(names.schema);
  return [
    `CREATE SCHEMA IF NOT EXISTS ${schema}`,
    `CREATE TABLE IF NOT EXISTS ${q.tickets} (\n      ${
      [...ticketColumnsDdl(), ...SOURCE_COLUMNS_DDL, ...STATE_COLUMNS_DDL].join(",\n      ")
    }\n    )`,
    // ticket tables made before cancellations: every row a purchase
    `ALTER TABLE ${q.tickets} ${
      STATE_COLUMNS_DDL.map((d) => `ADD COLUMN IF NOT EXISTS ${d}`).join(", ")
    }`,
    `CREATE TABLE IF NOT EXISTS ${q.seats} (
      show_id     uuid NOT NULL,
      seat        text COLLATE "C" NOT NULL,
      ticket_id   text NOT NULL,
      PRIMARY KEY (show_id, seat)
    )`,
    migrateSeatsToShowId(names, q.seats),
    // each seat a cancelled ticket held (its cancellation's position is on the ticket row)
    `CREATE TABLE IF NOT EXISTS ${q.freedSeats} (
      show_id     uuid NOT NULL,
      seat        text COLLATE "C" NOT NULL,
      ticket_id   text NOT NULL,
      PRIMARY KEY (show_id, seat, ticket_id)
    )`,
    // finds the cancellations of a partition at or after an offset (the sink's fast-path check);
    // purchases have no position there, so they add nothing to it
    `CREATE INDEX IF NOT EXISTS ${quoteIdent(`${names.table}_cancels`)} ON ${q.tickets}
      (cancel_topic, cancel_partition, cancel_offset) WHERE cancel_offset IS NOT NULL`,
    `CREATE TABLE IF NOT EXISTS ${q.transactions} (
      transaction_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      ticket_id   text COLLATE "C" NOT NULL UNIQUE,
      amount      numeric(12,2) NOT NULL,
      currency    char(3) NOT NULL,
      status      text NOT NULL DEFAULT '${PAID}',
      created_at  timestamptz NOT NULL,
      refunded_at timestamptz
    )`,
    `ALTER TABLE ${q.transactions} ADD COLUMN IF NOT EXISTS refunded_at timestamptz`,
    `CREATE TABLE IF NOT EXISTS ${q.offsets} (
      group_id    text NOT NULL,
      topic       text NOT NULL,
      partition   integer NOT NULL,
      next_offset bigint NOT NULL,
      updated_at  timestamptz NOT NULL DEFAULT now(),
      -- the batch write that moved it last, and what it did: a retry of that write whose
      -- reply was lost finds its own commit here
      write_id    uuid,
      write_counts jsonb,
      PRIMARY KEY (group_id, topic, partition)
    )`,
    `ALTER TABLE ${q.offsets} ADD COLUMN IF NOT EXISTS write_id uuid,
      ADD COLUMN IF NOT EXISTS write_counts jsonb`,
    `CREATE TABLE IF NOT EXISTS ${q.deadLetters} (
      id          bigserial PRIMARY KEY,
      group_id    text NOT NULL,
      target_table text NOT NULL,
      topic       text NOT NULL,
      partition   integer NOT NULL,
      "offset"    bigint NOT NULL,
      message_key bytea,
      message_value bytea,
      reason      text NOT NULL,
      detail      text NOT NULL,
      received_at timestamptz NOT NULL DEFAULT now(),
      replayed_at timestamptz,
      UNIQUE (group_id, topic, partition, "offset")
    )`,
    // tables made by an earlier version gain the columns added since
    `ALTER TABLE ${q.deadLetters} ADD COLUMN IF NOT EXISTS replayed_at timestamptz`,
    `CREATE TABLE IF NOT EXISTS ${q.conflicts} (
      id          bigserial PRIMARY KEY,
      target_table text NOT NULL,
      ticket_id   text NOT NULL,
      topic       text NOT NULL,
      partition   integer NOT NULL,
      "offset"    bigint NOT NULL,
      message_value bytea NOT NULL,
      recorded_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (target_table, topic, partition, "offset")
    )`,
  ];
}
