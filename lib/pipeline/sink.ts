/**
 * The PostgreSQL write path: one transaction per batch holding the ticket rows (multi-row
 * `unnest`), the cancellations, the dead letters, the conflicts and the consumer offset, fenced
 * by compare-and-set.
 * @module
 */
import { Buffer } from "node:buffer";
import { copyQuery, CopyWriter } from "../postgres/copy.ts";
import { messageOf } from "../errors.ts";
import { log } from "../log.ts";
import type { Database, PoolClient } from "../postgres/postgres.ts";
import { uuidv7s } from "../model/uuid.ts";
import {
  PAID,
  PAYMENT_WRITE_COLUMNS,
  type QualifiedNames,
  quoteLiteral,
  REFUNDED,
  SEAT_WRITE_COLUMNS,
  TICKET_WRITE_COLUMNS,
} from "../postgres/schema.ts";
import { type Cancel, type TicketStatus, UNKNOWN_TICKET } from "../model/message.ts";
import {
  columnTexter,
  sameTicket,
  showId,
  showIdSql,
  STORED_TICKET_SELECT,
  type StoredTicket,
  type Ticket,
  TICKET_COLUMNS,
  ticketText,
  ticketTexts,
} from "../model/columns.ts";
import { printable } from "../model/values.ts";

/** A parsed ticket and where it came from. */
export interface IncomingRow {
  ticket: Ticket;
  offset: string;
  /** The raw message value, kept to record a conflict or a refusal. */
  value: Uint8Array;
  /** The raw message key. */
  key?: Uint8Array | null;
  /** Kafka message timestamp (publish time). */
  publishedAt?: Date;
}

/** A parsed cancellation and where it came from. */
export interface IncomingCancel {
  cancel: Cancel;
  offset: string;
  /** The raw message value, kept to record a refusal. */
  value: Uint8Array;
  /** The raw message key. */
  key?: Uint8Array | null;
}

/** Dead-letter reason of a message PostgreSQL refused although it parsed as a ticket (isolate.ts). */
export const DB_REJECTED = "DB_REJECTED";
/** Reason of the marker dead letter recording offsets deleted before they were read. */
export const LOST_REASON = "LOST";
/** Reason of the marker dead letter recording offsets skipped by `--reset-offsets latest`. */
export const SKIPPED_REASON = "SKIPPED";
/** Dead letters that mark offset ranges rather than hold a message: never replayed. */
export const MARKER_REASONS: readonly string[] = [LOST_REASON, SKIPPED_REASON];

/** A message that is not a ticket. */
export interface DeadLetter {
  offset: string;
  key: Uint8Array | null;
  value: Uint8Array | null;
  reason: string;
  detail: string;
}

/** One partition's batch, with the offsets it moves between. */
export interface Batch {
  groupId: string;
  /** Unquoted ticket table name, recorded with dead letters and conflicts. */
  table: string;
  topic: string;
  partition: number;
  /** Next offset stored before this batch (compare-and-set guard). */
  expectedOffset: bigint;
  /** Next offset to store: last offset of the batch + 1. */
  nextOffset: bigint;
  /**
   * The group has an offset stored for the partition, which the claim must find at
   * `expectedOffset`. Without it the claim may create one: only the first write after a load
   * that found none, or a database that lost its last commits (a crash, a failover to a standby
   * behind) would have the offset created past messages it no longer holds. @default {false}
   */
  offsetStored?: boolean;
  /**
   * This write's id, the same on each of its tries, recorded with the offset its claim moves: a
   * try whose claim finds the offset moved, and moved by this write, learns that an earlier try
   * committed though its reply was lost (a connection cut mid-COMMIT) and does not count the batch
   * as fenced. Without one such a batch counts as fenced (its messages stored all the same).
   */
  writeId?: string;
  rows: IncomingRow[];
  /** Cancellations, applied in offset order with the rows (none: the batch may take COPY). */
  cancels?: IncomingCancel[];
  deadLetters: DeadLetter[];
}

/** What written messages became: a batch's counts, which a run adds up. */
export interface WriteCounts {
  stored: number;
  /** Same ticket_id and same content as a stored row; or a ticket cancelled already. */
  duplicates: number;
  /** Same ticket_id with different content: first stored wins, the newcomer is recorded. */
  conflicts: number;
  /** Dead letters written: the batch's unparseable messages plus tickets refused (SEAT_TAKEN). */
  deadLetters: number;
  /** Tickets refused because a seat was already sold for that show (also in deadLetters). */
  seatTaken: number;
  /** Cancellations applied: ticket cancelled, its seats freed, its payment refunded. */
  cancelled: number;
  /** Cancellations of a ticket never stored (UNKNOWN_TICKET dead letters, in deadLetters). */
  unknownTicket: number;
  /** Tickets PostgreSQL refused (DB_REJECTED dead letters, also in deadLetters). */
  rejected: number;
}

const WRITE_COUNTS: readonly (keyof WriteCounts)[] = [
  "stored",
  "duplicates",
  "conflicts",
  "deadLetters",
  "seatTaken",
  "cancelled",
  "unknownTicket",
  "rejected",
];

/** Counts all zero. */
export function noWriteCounts(): WriteCounts {
  return countsOf({});
}

/** Just the counts of `from` (a result, say), every one of them. */
function countsOf(from: Partial<WriteCounts>): WriteCounts {
  return Object.fromEntries(WRITE_COUNTS.map((k) => [k, from[k] ?? 0])) as unknown as WriteCounts;
}

/** Adds `more`'s counts to `into`'s; returns `into`. */
export function addWriteCounts<T extends WriteCounts>(into: T, more: WriteCounts): T {
  for (const k of WRITE_COUNTS) into[k] += more[k];
  return into;
}

/** What a batch did. */
export interface BatchResult extends WriteCounts {
  /**
   * False when another write moved the stored offset (another consumer, or a database that lost
   * commits): nothing was written. A retry that finds its own earlier try's commit is committed.
   */
  committed: boolean;
  /** Messages of the batch written (set by writeIsolating). */
  messages?: number;
}

const toBuffer = (bytes: Uint8Array | null) =>
  bytes === null ? null : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * Builds the SQL of the batch writes once per table; each transaction starts with the pool's
 * `begin` (its timeouts), plain BEGIN without one.
 */
export function sinkStatements(
  q: QualifiedNames,
  db: Pick<Database, "begin" | "lockTimeoutMs"> = { begin: "BEGIN" },
) {
  const params = ["$1", "$2", "$3", "$4", "$5", "$6::uuid", "NULL"];
  const createOrMove = claimOffsetSql(q, params), move = claimOffsetSql(q, params, true);
  return {
    /** Starts a batch's transaction: BEGIN and the pool's timeouts. */
    begin: db.begin,
    /** The lock timeout the transactions have, if any (see `endStalledCopies`). */
    lockTimeoutMs: db.lockTimeoutMs,
    /**
     * Moves the offset (no row: another write moved it, or the database lost it) and says
     * whether a cancellation of this partition after the batch's first offset is stored
     * (`behind`: a replay, whose purchases are judged as of their position by the careful path).
     */
    claimOffset: (batch: Batch) => batch.offsetStored ? move : createOrMove,
    /**
     * The claim as a statement of the fast path's one Query: a DO block that raises
     * {@linkcode FENCED} when the stored offset was elsewhere, {@linkcode BEHIND} for a replay.
     */
    claimBlock: (batch: Batch) => {
      const claim = claimOffsetSql(q, [
        quoteLiteral(batch.groupId),
        quoteLiteral(batch.topic),
        String(batch.partition),
        batch.nextOffset.toString(),
        batch.expectedOffset.toString(),
        batch.writeId === undefined ? "NULL" : `${quoteLiteral(batch.writeId)}::uuid`,
        // the counts of the fast path are known before it runs: they go with the claim
        `${quoteLiteral(JSON.stringify(fastCounts(batch)))}::jsonb`,
      ], batch.offsetStored);
      return `DO ${
        quoteLiteral(`DECLARE behind boolean; BEGIN
        ${claim} INTO behind;
        IF NOT FOUND THEN
          RAISE EXCEPTION 'the stored offset moved' USING ERRCODE = '${FENCED}';
        END IF;
        IF behind THEN
          RAISE EXCEPTION 'a later cancellation is stored' USING ERRCODE = '${BEHIND}';
        END IF;
      END`)
      }`;
    },
    insertTickets: insertTicketsSql(q),
    /**
     * Inserts the free seats of the batch's tickets and returns, for each seat of each ticket
     * (`i`, `j`), the seat's number in the batch and the ticket_id it was inserted under (null
     * if it was held already).
     */
    claimSeats: `WITH wanted AS MATERIALIZED (
        SELECT u.i, s.j, u.show_id, s.seat, u.id
        FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS u(show_id, id, seats, i),
          unnest(string_to_array(u.seats, ',')) WITH ORDINALITY AS s(seat, j)
      ), sold AS (
        INSERT INTO ${q.seats} (${SEAT_WRITE_COLUMNS.join(", ")})
        SELECT show_id, seat, id FROM wanted
        ON CONFLICT DO NOTHING
        RETURNING show_id, seat, ticket_id
      )
      SELECT w.i::int AS i, w.j::int AS j, sold.ticket_id AS claimant,
        (min(w.i * ${SEAT_SLOTS} + w.j) OVER (PARTITION BY w.show_id, w.seat))::float8 AS seat
      FROM wanted w LEFT JOIN sold USING (show_id, seat)`,
    insertTransactions: `INSERT INTO ${q.transactions} (${PAYMENT_WRITE_COLUMNS.join(", ")})
      SELECT * FROM unnest($1::text[], $2::numeric[], $3::text[], $4::timestamptz[], $5::uuid[])
      ON CONFLICT (ticket_id) DO NOTHING`,
    /**
     * COPY targets of the fast path: no conflict handling at all (COPY has none), so a known
     * ticket or a sold seat raises unique_violation.
     */
    copy: {
      /** False once the server refused COPY FROM STDIN (the embedded PGlite does): no fast path. */
      supported: true,
      tickets: `${q.tickets} (${TICKET_WRITE_COLUMNS.join(", ")})`,
      seats: `${q.seats} (${SEAT_WRITE_COLUMNS.join(", ")})`,
      transactions: `${q.transactions} (${PAYMENT_WRITE_COLUMNS.join(", ")})`,
    },
    seatOwners: `SELECT u.n AS seat, s.ticket_id
      FROM unnest($1::uuid[], $2::text[], $3::float8[]) AS u(show_id, seat, n)
      JOIN ${q.seats} s USING (show_id, seat)`,
    releaseSeats: `DELETE FROM ${q.seats} WHERE (show_id, seat, ticket_id) IN (
      SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]))`,
    reassignSeats: `UPDATE ${q.seats} s SET ticket_id = u.id
      FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(show_id, seat, id)
      WHERE (s.show_id, s.seat) = (u.show_id, u.seat)`,
    /**
     * The counts the write ($4: write id) recorded with the offset it moved, if it is still
     * where that write left it (group, topic, partition, next offset): see `landedEarlier`.
     */
    landed: `SELECT write_counts AS counts FROM ${q.offsets}
      WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $5
        AND write_id = $4::uuid`,
    /**
     * The careful path's last statement before COMMIT, with its `; ` (literals, sent with COMMIT
     * in one Query): records its counts with the offset its claim moved; nothing for a write
     * without an id.
     */
    recordCounts: (batch: Batch, counts: WriteCounts) =>
      batch.writeId === undefined
        ? ""
        : `UPDATE ${q.offsets} SET write_counts = ${
          quoteLiteral(JSON.stringify(countsOf(counts)))
        }::jsonb
      WHERE group_id = ${quoteLiteral(batch.groupId)} AND topic = ${
          quoteLiteral(batch.topic)
        } AND partition = ${batch.partition} AND write_id = ${quoteLiteral(batch.writeId)}::uuid; `,
    knownIds: `SELECT ticket_id, status, kafka_topic AS topic, kafka_partition AS partition,
        kafka_offset::text AS offset FROM ${q.tickets} WHERE ticket_id = ANY($1::text[])`,
    /**
     * The cancelled tickets that held seats of the batch (seat numbers as in `seatOwners`) up to
     * a cancellation of the batch's partition ($4, $5) after its first offset ($6): each with
     * its cancellation's offset and, if bought in that partition too, its purchase's offset.
     */
    freedHolders: `SELECT u.n AS seat, f.ticket_id, t.cancel_offset::text AS until,
        CASE WHEN t.kafka_topic = $4 AND t.kafka_partition = $5 THEN t.kafka_offset::text END
          AS bought
      FROM unnest($1::uuid[], $2::text[], $3::float8[]) AS u(show_id, seat, n)
      JOIN ${q.freedSeats} f USING (show_id, seat) JOIN ${q.tickets} t USING (ticket_id)
      WHERE t.cancel_topic = $4 AND t.cancel_partition = $5 AND t.cancel_offset > $6`,
    /**
     * Cancels the purchased tickets named (ids, times, reasons, offsets; topic and partition):
     * status, cancellation and its position set, their seats (by the show key computed from the
     * stored row: no index on the seats' ticket_id is needed) deleted where the ticket still
     * holds them and recorded as freed, their payments refunded. Counts what it cancelled.
     */
    applyCancels: `WITH c AS (
        UPDATE ${q.tickets} t SET status = 'cancelled', cancelled_at = u.at, cancel_reason = u.why,
          cancel_topic = $4, cancel_partition = $5, cancel_offset = u.off
        FROM unnest($1::text[], $2::timestamptz[], $3::text[], $6::bigint[]) AS u(id, at, why, off)
        WHERE t.ticket_id = u.id AND t.status = 'purchased'
        RETURNING t.ticket_id, t.theater, t.movie, t.showtime, t.seats, t.cancelled_at
      ), held AS (
        SELECT ${showIdSql("c.theater", "c.movie", "c.showtime")} AS show_id, x.seat, c.ticket_id
        FROM c, unnest(string_to_array(c.seats, ',')) AS x(seat)
      ), freed AS (
        DELETE FROM ${q.seats} s USING held h
        WHERE (s.show_id, s.seat, s.ticket_id) = (h.show_id, h.seat, h.ticket_id)
        RETURNING 1
      ), kept AS (
        INSERT INTO ${q.freedSeats} (show_id, seat, ticket_id) SELECT * FROM held
        ON CONFLICT DO NOTHING
        RETURNING 1
      ), refunded AS (
        UPDATE ${q.transactions} p SET status = '${REFUNDED}', refunded_at = c.cancelled_at
        FROM c WHERE p.ticket_id = c.ticket_id AND p.status = '${PAID}'
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM c)::int AS cancelled,
        (SELECT count(*) FROM freed)::int AS freed,
        (SELECT count(*) FROM kept)::int AS kept,
        (SELECT count(*) FROM refunded)::int AS refunded`,
    selectExisting:
      `SELECT ${STORED_TICKET_SELECT} FROM ${q.tickets} WHERE ticket_id = ANY($1::text[])`,
    insertConflicts:
      `INSERT INTO ${q.conflicts} (target_table, ticket_id, topic, partition, "offset", message_value)
      SELECT $1, u.id, $2, $3, u.off, u.val FROM unnest($4::text[], $5::bigint[], $6::bytea[]) AS u(id, off, val)
      ON CONFLICT DO NOTHING`,
    insertDeadLetters: `INSERT INTO ${q.deadLetters} (group_id, target_table, topic, partition,
        "offset", message_key, message_value, reason, detail)
      SELECT $1, $2, $3, $4, u.off, u.k, u.v, u.reason, u.detail
      FROM unnest($5::bigint[], $6::bytea[], $7::bytea[], $8::text[], $9::text[])
        AS u(off, k, v, reason, detail)
      ON CONFLICT DO NOTHING`,
  };
}

/**
 * Moves the offset (no row: it was elsewhere) and says whether a cancellation of the partition
 * after the batch's first offset is stored (`behind`: a replay, whose purchases are judged as of
 * their position by the careful path). The values, as SQL (placeholders or literals): group,
 * topic, partition, the batch's next offset, the offset it expects stored, the write's id and
 * its counts (JSON, or NULL until the careful path's `recordCounts`). `stored`: only move an
 * offset that exists (see `Batch.offsetStored`); otherwise create it when there is none.
 */
function claimOffsetSql(q: QualifiedNames, values: readonly string[], stored = false): string {
  const [group, topic, partition, next, expected, writeId, counts] = values;
  const claim = stored
    ? `UPDATE ${q.offsets} AS o SET next_offset = ${next}, updated_at = now(),
        write_id = ${writeId}, write_counts = ${counts}
      WHERE o.group_id = ${group} AND o.topic = ${topic} AND o.partition = ${partition}
        AND o.next_offset = ${expected}`
    : `INSERT INTO ${q.offsets} AS o (group_id, topic, partition, next_offset, write_id,
        write_counts)
      VALUES (${group}, ${topic}, ${partition}, ${next}, ${writeId}, ${counts})
      ON CONFLICT (group_id, topic, partition)
      DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now(),
        write_id = EXCLUDED.write_id, write_counts = EXCLUDED.write_counts
      WHERE o.next_offset = ${expected}`;
  return `${claim}
      RETURNING EXISTS (SELECT FROM ${q.tickets} t WHERE t.cancel_topic = ${topic}
        AND t.cancel_partition = ${partition} AND t.cancel_offset > ${expected}) AS behind`;
}

/**
 * SQLSTATE the fast path's claim raises when the stored offset moved (another member wrote, or an
 * earlier try of this write whose reply was lost: see `landedEarlier`).
 */
const FENCED = "TK001";
/** SQLSTATE the fast path's claim raises for a replay behind a stored cancellation. */
const BEHIND = "TK002";

/** SQL of a table's batch writes. */
export type SinkStatements = ReturnType<typeof sinkStatements>;

/**
 * The insert of the careful path: one array parameter per ticket column (in the column spec's
 * order and element types), then topic and partition, then offsets and publish times.
 */
function insertTicketsSql(q: QualifiedNames): string {
  const n = TICKET_COLUMNS.length;
  const u = TICKET_COLUMNS.map((_, i) => `u.c${i}`).join(", ");
  const arrays = TICKET_COLUMNS.map((c, i) => `$${i + 1}::${c.array}[]`).join(", ");
  const names = TICKET_COLUMNS.map((_, i) => `c${i}`).join(", ");
  return `INSERT INTO ${q.tickets} (${TICKET_WRITE_COLUMNS.join(", ")})
      SELECT ${u}, $${n + 1}, $${n + 2}, u.off, u.published
      FROM unnest(${arrays}, $${n + 3}::bigint[], $${n + 4}::timestamptz[])
        AS u(${names}, off, published)
      ON CONFLICT (ticket_id) DO NOTHING
      RETURNING kafka_offset`;
}

/**
 * Numbers the batch's seats in a seat claim: a seat is named after the first ticket and seat
 * position that want it, `ticket * SEAT_SLOTS + position` (both from 1); a ticket has at most
 * `MAX_SEATS` (8) seats.
 */
const SEAT_SLOTS = 1000;

/** Parameters of a seat claim: per ticket its show, id and comma-joined seats. */
function seatClaimParams(rows: IncomingRow[]): string[][] {
  return [
    rows.map((r) => showId(r.ticket)),
    rows.map((r) => r.ticket.ticket_id),
    rows.map((r) => r.ticket.seats.join(",")),
  ];
}

/**
 * The batch's seats right after its claim. Seats are compared by the database (the unique key's
 * equality), never by reading timestamps back in JavaScript.
 */
interface SeatClaim {
  /** Per ticket of the batch, the seat number (see {@linkcode SEAT_SLOTS}) of each of its seats. */
  seats: number[][];
  /** Seats this batch inserted, with the ticket_id they were inserted under. */
  inserted: Map<number, string>;
  /** The other seats, with the ticket_id of the stored ticket holding each. */
  holders: Map<number, string>;
  /**
   * Cancelled tickets that held a seat until a cancellation of the batch's partition after the
   * batch's first offset (read only when one is stored: a replay), by seat number.
   */
  history: Map<number, Freed[]>;
}

/** A cancelled ticket that held a seat, and when, in the batch's partition. */
interface Freed {
  ticket_id: string;
  /** The cancellation's offset: the seat was held for purchases before it. */
  until: bigint;
  /** The purchase's offset when it was read from the same partition (held only after it). */
  bought?: bigint;
}

/** A stored ticket as the careful path knows it: its status and where its purchase was read. */
export interface KnownTicket {
  status: TicketStatus;
  topic: string;
  partition: number;
  offset: string;
}

/** The ticket and seat label a seat number names. */
function seatAt(rows: IncomingRow[], seat: number): { ticket: Ticket; label: string } {
  const ticket = rows[Math.floor(seat / SEAT_SLOTS) - 1]!.ticket;
  return { ticket, label: ticket.seats[(seat % SEAT_SLOTS) - 1]! };
}

/**
 * Inserts every free seat of the batch's tickets in one statement, then reads who holds the
 * others. The unique key arbitrates between concurrent batches: the insert waits for a batch in
 * flight that wrote the same seat, so afterwards each seat is either this batch's (locked until
 * it commits) or committed to a stored ticket. When the batch is `behind` a stored cancellation
 * of its partition, it also reads which cancelled tickets held its seats until then. Which
 * ticket keeps a seat is then decided by {@linkcode decideSeats}. Undefined when a holder was
 * deleted in between: claim again.
 */
async function claimSeats(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
  behind: boolean,
): Promise<SeatClaim | undefined> {
  const rows = batch.rows;
  const claimed = await client.query<{ i: number; j: number; seat: number; claimant: string }>(
    sql.claimSeats,
    seatClaimParams(rows),
  );
  const seats = rows.map((r) => new Array<number>(r.ticket.seats.length));
  const inserted = new Map<number, string>();
  for (const r of claimed.rows) {
    seats[r.i - 1]![r.j - 1] = r.seat;
    if (r.claimant !== null) inserted.set(r.seat, r.claimant);
  }
  const others = new Set<number>();
  const cols: (string | number)[][] = [[], [], []];
  for (const list of seats) {
    for (const seat of list) {
      if (inserted.has(seat) || others.has(seat)) continue;
      others.add(seat);
      const { ticket: t, label } = seatAt(rows, seat);
      cols[0]!.push(showId(t)), cols[1]!.push(label), cols[2]!.push(seat);
    }
  }
  const holders = new Map<number, string>();
  if (others.size > 0) {
    const held = await client.query<{ seat: number; ticket_id: string }>(sql.seatOwners, cols);
    for (const r of held.rows) holders.set(r.seat, r.ticket_id);
  }
  if (holders.size !== others.size) return undefined;
  const history = behind ? await freedHolders(client, sql, batch, seats) : new Map();
  return { seats, inserted, holders, history };
}

/** The cancelled tickets that held the batch's seats, by seat number (see `freedHolders`). */
async function freedHolders(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
  seats: number[][],
): Promise<Map<number, Freed[]>> {
  const cols: (string | number)[][] = [[], [], []];
  for (const seat of new Set(seats.flat())) {
    const { ticket: t, label } = seatAt(batch.rows, seat);
    cols[0]!.push(showId(t)), cols[1]!.push(label), cols[2]!.push(seat);
  }
  const found = await client.query<
    { seat: number; ticket_id: string; until: string; bought: string | null }
  >(
    sql.freedHolders,
    [...cols, batch.topic, batch.partition, batch.expectedOffset.toString()],
  );
  const history = new Map<number, Freed[]>();
  for (const r of found.rows) {
    const freed: Freed = { ticket_id: r.ticket_id, until: BigInt(r.until) };
    if (r.bought !== null) freed.bought = BigInt(r.bought);
    history.set(r.seat, [...history.get(r.seat) ?? [], freed]);
  }
  return history;
}

/**
 * The cancelled ticket that held `seat` when the purchase at `offset` was read: one whose
 * cancellation comes after it in the partition, bought before it (or in another partition).
 */
function heldAsOf(claim: SeatClaim, seat: number, offset: bigint): string | undefined {
  return claim.history.get(seat)?.find((f) =>
    offset < f.until && (f.bought === undefined || f.bought < offset)
  )?.ticket_id;
}

/** What becomes of the batch's messages, by {@linkcode decideSeats}. */
interface SeatDecision {
  /** New tickets, each with all its seats. */
  accepted: IncomingRow[];
  /** Tickets whose id is stored before or earlier in the batch: they take no seat. */
  skipped: IncomingRow[];
  /** Tickets refused for a seat that another stored ticket holds, as SEAT_TAKEN dead letters. */
  refused: DeadLetter[];
  /** The accepted ticket keeping each seat it took (inserted by this batch, or freed in it). */
  keepers: Map<number, IncomingRow>;
  /** Accepted tickets that refused tickets were refused for (and for no stored ticket). */
  blockers: Set<IncomingRow>;
  /** Cancellations that apply (of a ticket stored and not cancelled), in offset order. */
  cancelled: IncomingCancel[];
  /** Cancellations of a ticket cancelled already: counted as duplicates, nothing written. */
  repeated: number;
  /** Cancellations of a ticket never stored, as UNKNOWN_TICKET dead letters. */
  unknown: DeadLetter[];
  /** Seats held by a ticket stored before the batch that a cancellation of the batch freed. */
  freed: Set<number>;
}

/** The ticket holding a seat once the decision is made (undefined: the seat is free). */
function ownerOf(decision: SeatDecision, claim: SeatClaim, seat: number): string | undefined {
  return decision.keepers.get(seat)?.ticket.ticket_id ??
    (decision.freed.has(seat) ? undefined : claim.holders.get(seat));
}

/**
 * Decides the batch's messages one at a time in offset order, purchases and cancellations
 * merged, as if each were its own batch, so the answer does not depend on batching: a ticket is
 * refused only for a seat held by another ticket that is stored (committed before, or accepted
 * earlier in this batch) and not cancelled since; otherwise a ticket whose id is stored (in
 * `known`, or accepted earlier) is a duplicate or a conflict and takes no seat (a cancelled one
 * never takes its seats back); any other ticket is accepted with its seats. A cancellation frees
 * its ticket's seats for the purchases after it; of a ticket cancelled already it is a duplicate,
 * of a ticket not stored (not even earlier in the batch) an UNKNOWN_TICKET dead letter.
 *
 * Each message is judged as of its own position, so a replay under a new group decides as the
 * first run did: a seat a ticket held until a cancellation later in the partition is held for
 * the purchases before that cancellation ({@linkcode heldAsOf}), and a cancellation before its
 * ticket's purchase in the partition finds no ticket stored.
 */
function decideSeats(
  batch: Batch,
  claim: SeatClaim,
  known: Map<string, KnownTicket>,
): SeatDecision {
  const { rows, cancels = [] } = batch;
  const decision: SeatDecision = {
    accepted: [],
    skipped: [],
    refused: [],
    keepers: new Map(),
    blockers: new Set(),
    cancelled: [],
    repeated: 0,
    unknown: [],
    freed: new Set(),
  };
  const { keepers, blockers } = decision;
  const status = new Map([...known].map(([id, k]) => [id, k.status]));
  // the batch's seats each ticket holds, to free them when it is cancelled
  const seatsOf = new Map<string, number[]>();
  for (const [seat, id] of claim.holders) seatsOf.set(id, [...seatsOf.get(id) ?? [], seat]);
  const purchase = (row: IncomingRow, i: number) => {
    const t = row.ticket;
    const seats = claim.seats[i]!;
    if (status.get(t.ticket_id) === "cancelled") return void decision.skipped.push(row);
    const offset = BigInt(row.offset);
    const holder = (seat: number) =>
      ownerOf(decision, claim, seat) ?? heldAsOf(claim, seat, offset);
    const taken = seats.filter((seat) => (holder(seat) ?? t.ticket_id) !== t.ticket_id);
    if (taken.length > 0) {
      // held only by tickets of this batch: the refusal stands or falls with them
      if (taken.every((seat) => keepers.has(seat))) {
        for (const seat of taken) blockers.add(keepers.get(seat)!);
      }
      const first = taken[0]!, label = t.seats[seats.indexOf(first)];
      decision.refused.push({
        offset: row.offset,
        key: row.key ?? null,
        value: row.value,
        reason: "SEAT_TAKEN",
        detail: `seat ${label} of ${t.movie} at ${t.theater}, ${t.showtime} is sold to ticket ${
          holder(first)
        }`,
      });
    } else if (status.has(t.ticket_id)) {
      decision.skipped.push(row);
    } else {
      status.set(t.ticket_id, "purchased");
      decision.accepted.push(row);
      seatsOf.set(t.ticket_id, [...seatsOf.get(t.ticket_id) ?? [], ...seats]);
      for (const seat of seats) keepers.set(seat, row);
    }
  };
  const cancel = (c: IncomingCancel) => {
    const id = c.cancel.ticket_id;
    const k = known.get(id);
    // stored from a purchase after this cancellation in its partition: not stored as of it
    const later = k !== undefined && k.topic === batch.topic && k.partition === batch.partition &&
      BigInt(k.offset) > BigInt(c.offset);
    const now = later ? undefined : status.get(id);
    if (now === undefined) {
      decision.unknown.push({
        offset: c.offset,
        key: c.key ?? null,
        value: c.value,
        reason: UNKNOWN_TICKET,
        detail: `ticket ${id} is not stored: a cancellation must follow its purchase`,
      });
    } else if (now === "cancelled") decision.repeated++;
    else {
      status.set(id, "cancelled");
      decision.cancelled.push(c);
      for (const seat of seatsOf.get(id) ?? []) {
        if (keepers.get(seat)?.ticket.ticket_id === id) keepers.delete(seat);
        if (claim.holders.get(seat) === id) decision.freed.add(seat);
      }
    }
  };
  let next = 0;
  rows.forEach((row, i) => {
    while (next < cancels.length && BigInt(cancels[next]!.offset) < BigInt(row.offset)) {
      cancel(cancels[next++]!);
    }
    purchase(row, i);
  });
  while (next < cancels.length) cancel(cancels[next++]!);
  return decision;
}

/**
 * Settles the seats the batch's claim touched to the decision: a seat that no ticket holds any
 * more is given back (a seat this batch inserted and no accepted ticket keeps, or one freed by a
 * cancellation); a seat held by another ticket than the one it is recorded under (inserted under
 * another ticket of the batch, or taken after a cancellation freed it) changes hands.
 */
async function releaseSeats(
  client: PoolClient,
  sql: SinkStatements,
  rows: IncomingRow[],
  claim: SeatClaim,
  decision: SeatDecision,
) {
  const released: string[][] = [[], [], []];
  const moved: string[][] = [[], [], []];
  const settle = (seat: number, recorded: string) => {
    const keeper = ownerOf(decision, claim, seat);
    if (keeper === recorded) return;
    const cols = keeper === undefined ? released : moved;
    const { ticket: t, label } = seatAt(rows, seat);
    cols[0]!.push(showId(t)), cols[1]!.push(label), cols[2]!.push(keeper ?? recorded);
  };
  for (const [seat, claimant] of claim.inserted) settle(seat, claimant);
  for (const [seat, stored] of claim.holders) settle(seat, stored);
  if (released[0]!.length > 0) await client.query(sql.releaseSeats, released);
  if (moved[0]!.length > 0) await client.query(sql.reassignSeats, moved);
}

/**
 * Applies the decided cancellations after the batch's purchases are in (a ticket bought earlier
 * in the batch has its row and payment by then); returns how many it cancelled.
 */
async function applyCancels(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
  cancels: IncomingCancel[],
): Promise<number> {
  const result = await client.query<{ cancelled: number }>(sql.applyCancels, [
    cancels.map((c) => c.cancel.ticket_id),
    cancels.map((c) => c.cancel.cancelled_at),
    cancels.map((c) => c.cancel.reason),
    batch.topic,
    batch.partition,
    cancels.map((c) => c.offset),
  ]);
  return result.rows[0]!.cancelled;
}

/** PostgreSQL's unique_violation: the fast path met a known ticket or a sold seat. */
const UNIQUE_VIOLATION = "23505";
/** PostgreSQL's feature_not_supported: the server does not take COPY FROM STDIN. */
const FEATURE_NOT_SUPPORTED = "0A000";
/** PostgreSQL's insufficient_privilege, e.g. no USAGE on the plpgsql language. */
const INSUFFICIENT_PRIVILEGE = "42501";
/** PostgreSQL's undefined_object, e.g. a server without the plpgsql language. */
const UNDEFINED_OBJECT = "42704";
/** PostgreSQL's lock_not_available: a lock wait exceeded lock_timeout. */
const LOCK_NOT_AVAILABLE = "55P03";

function emptyResult(): BatchResult {
  return { committed: false, ...noWriteCounts() };
}

/**
 * Writes one batch in one transaction: claims the offset range (fails, writing nothing, if the
 * stored offset is not `expectedOffset`), refuses tickets whose seat is sold (as SEAT_TAKEN dead
 * letters), inserts the others with their seats and transactions (skipping known ids), records
 * conflicts and dead letters, then commits. A claim that fails because an earlier try of the same
 * write (`Batch.writeId`) committed, its reply lost, reports that commit's recorded counts.
 *
 * The common case, where every ticket is new and every seat free, takes a fast path: the rows go
 * in with `COPY FROM STDIN`, which has no conflict handling and is PostgreSQL's cheapest way in
 * (about twice as fast as `INSERT ... ON CONFLICT` from arrays here). When a row meets a known
 * ticket or a sold seat, PostgreSQL raises unique_violation, the transaction is rolled back
 * (nothing of it stays) and the batch is written again the careful way. A server that refuses
 * COPY FROM STDIN (the embedded PGlite) gets every batch the careful way.
 */
export async function writeBatch(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
): Promise<BatchResult> {
  try {
    let result: BatchResult | undefined;
    // a batch with cancellations goes the careful way: they change rows already stored
    if (batch.rows.length > 0 && sql.copy.supported && !batch.cancels?.length) {
      result = await writeFast(client, sql, batch);
    }
    result ??= await writeCarefully(client, sql, batch);
    return result.committed ? result : await landedEarlier(client, sql, batch) ?? result;
  } catch (error) {
    if ((error as { code?: string }).code === LOCK_NOT_AVAILABLE && sql.lockTimeoutMs) {
      await endStalledCopies(client, sql.lockTimeoutMs);
    }
    throw error;
  }
}

/**
 * The counts of a batch that an earlier try of the same write committed, as that try recorded
 * them with the offset it moved, when the stored offset is still where it left it (see
 * `Batch.writeId`); undefined when another write moved it.
 */
async function landedEarlier(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
): Promise<BatchResult | undefined> {
  if (batch.writeId === undefined) return undefined;
  const found = await client.query<{ counts: WriteCounts | null }>(sql.landed, [
    batch.groupId,
    batch.topic,
    batch.partition,
    batch.writeId,
    batch.nextOffset.toString(),
  ]);
  const counts = found.rows[0]?.counts;
  if (!counts) return undefined;
  log(
    "info",
    `partition ${batch.partition}: offsets ${batch.expectedOffset}..${
      batch.nextOffset - 1n
    } were committed by an earlier try whose reply was lost; not written again`,
  );
  return { committed: true, ...countsOf(counts) };
}

/** What the fast path's commit did: every row stored, every dead letter recorded. */
function fastCounts(batch: Batch): WriteCounts {
  return countsOf({ stored: batch.rows.length, deadLetters: batch.deadLetters.length });
}

/**
 * What the fast path's statement string starts with, so that `pg_stat_activity.query` (cut to
 * `track_activity_query_size`, 1 kB by default) shows it whatever the names' lengths.
 */
const FAST_PATH_MARK = "/* tickets: batch by COPY */";

/**
 * Ends the sessions of this pipeline (same database, role and application name) that sit in the
 * fast path's COPY FROM STDIN waiting for their client: a consumer frozen mid-COPY (SIGSTOP, a
 * paused VM) holds its batch's locks, which neither statement_timeout nor
 * idle_in_transaction_session_timeout can free while the server waits for COPY data. A live
 * consumer streams a batch's rows in pieces, each made in about a millisecond while the server
 * stores the one before, so its COPY waits for it only briefly, and its whole statement string
 * lasts less than the lock timeout it may wait in its claim plus a fraction of a second: only a
 * session whose string began more than twice the lock timeout ago qualifies (a frozen one is
 * ended at the second timed-out wait for its locks, never a live one that waited in its claim).
 * Called after a lock wait timed out; the caller's retry then gets the locks. Returns how many.
 */
export async function endStalledCopies(client: PoolClient, lockTimeoutMs: number): Promise<number> {
  try {
    const ended = await client.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE pid <> pg_backend_pid() AND datname = current_database()
         AND usename = current_user AND application_name = current_setting('application_name')
         AND state = 'active' AND wait_event = 'ClientRead' AND starts_with(query, $1)
         AND query_start < clock_timestamp() - make_interval(secs => $2::float8 / 1000 * 2)`,
      [FAST_PATH_MARK, lockTimeoutMs],
    );
    if (ended.rowCount) {
      log("warn", `ended ${ended.rowCount} session(s) of this pipeline stalled in a COPY`);
    }
    return ended.rowCount ?? 0;
  } catch (error) {
    log("warn", `could not look for stalled COPY sessions: ${messageOf(error)}`);
    return 0;
  }
}

/**
 * The fast path of {@linkcode writeBatch}; undefined when the batch must go the careful way. The
 * transaction goes as one simple-protocol Query (BEGIN, the offset claim, the three COPYs, and
 * COMMIT unless dead letters follow) with the COPYs' data streamed right behind it: the server
 * goes from one statement to the next without waiting for this process, whose event loop may be
 * busy elsewhere (a fetch decoded, a slice parsed, a GC) whenever a statement ends.
 */
async function writeFast(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
): Promise<BatchResult | undefined> {
  const pieces = copyPieces(batch); // its first piece goes out with the Query
  try {
    await copyQuery(client, fastPathText(sql, batch), [
      pieces.seats,
      pieces.tickets,
      pieces.payments,
    ]);
    if (!commitsInQuery(batch)) {
      await insertDeadLetters(client, sql, batch, batch.deadLetters);
      await client.query("COMMIT");
    }
    return { committed: true, ...fastCounts(batch) };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    switch ((error as { code?: string }).code) {
      case FENCED:
        return emptyResult();
      case BEHIND: // a replay behind a stored cancellation: judged as of its position
      case UNIQUE_VIOLATION:
        return undefined;
      // no COPY FROM STDIN (the embedded PGlite), no DO block (no USAGE on plpgsql): the
      // careful path's plain statements from now on; one they need too fails there, named
      case FEATURE_NOT_SUPPORTED:
      case INSUFFICIENT_PRIVILEGE:
      case UNDEFINED_OBJECT:
        sql.copy.supported = false;
        return undefined;
      default:
        throw error;
    }
  }
}

/**
 * The fast path's statement string for a batch: its mark, BEGIN with the pool's timeouts, the
 * claim, the COPYs of seats, tickets and payments, and COMMIT unless dead letters follow.
 */
export function fastPathText(sql: SinkStatements, batch: Batch): string {
  return `${FAST_PATH_MARK} ${sql.begin}; ${sql.claimBlock(batch)};
    COPY ${sql.copy.seats} FROM STDIN; COPY ${sql.copy.tickets} FROM STDIN;
    COPY ${sql.copy.transactions} FROM STDIN;${commitsInQuery(batch) ? " COMMIT;" : ""}`;
}

/** True when the fast path's statement string ends with COMMIT: no dead letters follow it. */
const commitsInQuery = (batch: Batch) => batch.deadLetters.length === 0;

/** Tickets per piece of a streamed COPY: the client makes one while the server stores one. */
export const COPY_PIECE_TICKETS = 250;

/**
 * The batch's rows in COPY text format, in pieces of {@linkcode COPY_PIECE_TICKETS} tickets.
 * `seats`, the first of the three COPYs and the longest for the server, is lazy: its COPY asks
 * for a piece when the one before has left (the first is made at once, while the batch's first
 * statements travel), ~0.5 ms of the client's time for ~4 ms of the server's. Once every seat
 * is sent, the same stream makes the other two tables' pieces while the server is still storing
 * seats, yielding an empty piece after each so that the event loop turns and the seats the
 * socket could not take yet keep flowing; the other two COPYs then find their data ready. The
 * server waited least this way (bench/README.md): making each table's lines only when its own
 * COPY asks, making them outside the seats' stream, and larger pieces all left it idle longer.
 */
export function copyPieces(batch: Batch): {
  seats: Iterable<Buffer>;
  tickets: Buffer[];
  payments: Buffer[];
} {
  const tickets: Buffer[] = [], payments: Buffer[] = [];
  const n = batch.rows.length;
  const first = piece(batch, 0, Math.min(n, COPY_PIECE_TICKETS), 448, seatLines); // made now
  function* seats(): Generator<Buffer> {
    yield first;
    for (let from = COPY_PIECE_TICKETS; from < n; from += COPY_PIECE_TICKETS) {
      yield piece(batch, from, Math.min(n, from + COPY_PIECE_TICKETS), 448, seatLines);
    }
    // the server has most seats to store still: the other two tables are made meanwhile, a
    // piece at a time, the event loop turning in between (an empty piece) so that the seats
    // the socket could not take yet keep flowing to the server
    for (let from = 0; from < n; from += COPY_PIECE_TICKETS) {
      const to = Math.min(n, from + COPY_PIECE_TICKETS);
      tickets.push(piece(batch, from, to, 384, ticketLines));
      yield NOTHING;
      payments.push(piece(batch, from, to, 128, paymentLines));
      yield NOTHING;
    }
  }
  return { seats: seats(), tickets, payments };
}

/** A piece without data: the COPY's sender lets the event loop turn before asking again. */
const NOTHING = Buffer.alloc(0);

/** Writes the lines of the batch's rows `from` to `to` (excluded) of one table. */
type WriteLines = (out: CopyWriter, batch: Batch, from: number, to: number) => void;

/** One table's lines of some rows; `bytesPerTicket` sizes the buffer for a typical ticket. */
function piece(
  batch: Batch,
  from: number,
  to: number,
  bytesPerTicket: number,
  write: WriteLines,
): Buffer {
  const out = new CopyWriter((to - from) * bytesPerTicket);
  write(out, batch, from, to);
  return out.bytes();
}

/** The ticket table's lines: the columns' texts in the spec's order, then where it was read. */
const ticketLines: WriteLines = (out, batch, from, to) => {
  const partition = String(batch.partition);
  let publishedMs: number | undefined = NaN, published = "";
  for (let i = from; i < to; i++) {
    const { ticket, offset, publishedAt } = batch.rows[i]!;
    for (let c = 0; c < TICKET_COLUMNS.length; c++) out.field(ticketText(ticket, c));
    out.field(batch.topic);
    out.field(partition);
    out.field(offset);
    // consecutive messages mostly share a publish time: its text is made once per change
    if (publishedAt?.getTime() !== publishedMs) {
      publishedMs = publishedAt?.getTime();
      published = publishedAt ? publishedAt.toISOString() : "";
    }
    if (publishedAt) out.last(published);
    else out.nullField(true);
  }
};

/** The seats table's lines: per seat its show, its label and the ticket holding it. */
const seatLines: WriteLines = (out, batch, from, to) => {
  for (let i = from; i < to; i++) {
    const ticket = batch.rows[i]!.ticket;
    const show = showId(ticket);
    for (const seat of ticket.seats) {
      out.field(show);
      out.field(seat);
      out.last(ticket.ticket_id);
    }
  }
};

/** The payments table's lines: ticket, amount, currency, time and a new transaction id. */
const paymentLines: WriteLines = (out, batch, from, to) => {
  // the id is made here: gen_random_uuid() costs the database ~5 µs a row (OpenSSL's
  // RAND_bytes), a third of the insert, on the machine's busiest process; and version 7 keeps
  // the primary key's inserts at the index's right edge
  const ids = uuidv7s(to - from);
  for (let i = from; i < to; i++) {
    const ticket = batch.rows[i]!.ticket;
    out.field(ticket.ticket_id);
    out.field(amountText(ticket));
    out.field(currencyText(ticket));
    out.field(purchasedText(ticket));
    out.last(ids[i - from]!);
  }
};

/** The payment's values, as the ticket table's columns hold them (both paths). */
const amountText = columnTexter("price_amount"), currencyText = columnTexter("price_currency");
const purchasedText = columnTexter("purchased_at");

/**
 * Moves the stored offset from `expectedOffset` to `nextOffset`; undefined if it was elsewhere.
 * `behind`: a cancellation of the partition after the batch's start is stored (a replay).
 */
async function claimOffset(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
): Promise<{ behind: boolean } | undefined> {
  const claim = await client.query<{ behind: boolean }>(sql.claimOffset(batch), [
    batch.groupId,
    batch.topic,
    batch.partition,
    batch.nextOffset.toString(),
    batch.expectedOffset.toString(),
    batch.writeId ?? null,
  ]);
  return claim.rowCount === 1 ? claim.rows[0] : undefined;
}

/** Longest dead-letter detail stored, in characters. */
const DETAIL_MAX = 2000;

/** Records dead letters (idempotent per offset); returns how many were given. */
async function insertDeadLetters(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
  deadLetters: DeadLetter[],
): Promise<number> {
  if (deadLetters.length === 0) return 0;
  await client.query(sql.insertDeadLetters, [
    batch.groupId,
    batch.table,
    batch.topic,
    batch.partition,
    deadLetters.map((x) => x.offset),
    deadLetters.map((x) => toBuffer(x.key)),
    deadLetters.map((x) => toBuffer(x.value)),
    deadLetters.map((x) => x.reason),
    // a detail may quote a message (made anywhere): never a NUL or a lone surrogate
    deadLetters.map((x) => printable(x.detail, DETAIL_MAX)),
  ]);
  return deadLetters.length;
}

/**
 * Most tries of the careful path at one batch. A try is repeated only when the seats it read
 * changed meanwhile (a holder deleted by hand), or when tickets it accepted turn out to be stored
 * already while a later ticket was refused for their seats or the batch cancels tickets; each
 * try reads the stored ids again.
 */
const MAX_CAREFUL_TRIES = 10;

/** The careful path of {@linkcode writeBatch}: handles known tickets, sold seats, cancels. */
async function writeCarefully(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
): Promise<BatchResult> {
  // ids stored before take no seat: knowing them up front, one try decides the whole batch
  const ids = [
    ...new Set([
      ...batch.rows.map((r) => r.ticket.ticket_id),
      ...(batch.cancels ?? []).map((c) => c.cancel.ticket_id),
    ]),
  ];
  for (let attempt = 1; attempt <= MAX_CAREFUL_TRIES; attempt++) {
    const known = new Map(
      ids.length === 0
        ? []
        : (await client.query<KnownTicket & { ticket_id: string }>(sql.knownIds, [ids])).rows
          .map((r) => [r.ticket_id, r]),
    );
    const result = await writeCarefullyOnce(client, sql, batch, known);
    if (result) return result;
  }
  throw new Error(
    `the seats of ${batch.topic}/${batch.partition} at offset ${batch.expectedOffset} kept changing during ${MAX_CAREFUL_TRIES} tries`,
  );
}

/**
 * One try of {@linkcode writeCarefully}, in one transaction; undefined when it rolled back to be
 * tried again.
 */
async function writeCarefullyOnce(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
  known: Map<string, KnownTicket>,
): Promise<BatchResult | undefined> {
  const result = emptyResult();
  await client.query(sql.begin);
  try {
    const claim = await claimOffset(client, sql, batch);
    if (!claim) {
      await client.query("ROLLBACK");
      return result;
    }
    const deadLetters = [...batch.deadLetters];
    if (batch.rows.length + (batch.cancels?.length ?? 0) > 0) {
      if (!await writeMessages(client, sql, batch, known, claim.behind, result, deadLetters)) {
        await client.query("ROLLBACK");
        return undefined;
      }
    }
    result.deadLetters = await insertDeadLetters(client, sql, batch, deadLetters);
    await client.query(`${sql.recordCounts(batch, result)}COMMIT`);
    result.committed = true;
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}

/** The claim of a batch without purchases: no seat. */
const NO_SEATS: SeatClaim = {
  seats: [],
  inserted: new Map(),
  holders: new Map(),
  history: new Map(),
};

/**
 * The purchases and cancellations of a careful try, inside its transaction: counts go to
 * `result`, refusals to `deadLetters`. False when the try must be rolled back and made again.
 */
async function writeMessages(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
  known: Map<string, KnownTicket>,
  behind: boolean,
  result: BatchResult,
  deadLetters: DeadLetter[],
): Promise<boolean> {
  const cancels = batch.cancels ?? [];
  const claim = batch.rows.length > 0 ? await claimSeats(client, sql, batch, behind) : NO_SEATS;
  if (!claim) return false;
  const decision = decideSeats(batch, claim, known);
  const { accepted, skipped, refused, keepers, blockers } = decision;
  result.seatTaken = refused.length;
  result.unknownTicket = decision.unknown.length;
  deadLetters.push(...refused, ...decision.unknown);
  const inserted = accepted.length > 0
    ? await insertTickets(client, sql, batch, accepted)
    : new Set<string>();
  result.stored = inserted.size;
  const fresh = accepted.filter((r) => inserted.has(r.offset));
  // ids stored before (the ticket table's key decided): duplicates or conflicts, no seat
  const found = accepted.filter((r) => !inserted.has(r.offset));
  if (found.length > 0) {
    // a later ticket was refused for a seat one of them took, or a cancellation may name one
    // of them: decide again, knowing them
    if (cancels.length > 0 || found.some((r) => blockers.has(r))) return false;
    const gone = new Set(found);
    for (const [seat, row] of keepers) if (gone.has(row)) keepers.delete(seat);
  }
  await releaseSeats(client, sql, batch.rows, claim, decision);
  if (fresh.length > 0) await insertTransactions(client, sql.insertTransactions, fresh);
  if (decision.cancelled.length > 0) {
    result.cancelled = await applyCancels(client, sql, batch, decision.cancelled);
    // a status changed since it was read: decide again
    if (result.cancelled !== decision.cancelled.length) return false;
  }
  skipped.push(...found);
  await recordSkipped(client, sql, batch, skipped, result);
  result.duplicates += decision.repeated;
  return true;
}

/**
 * Sorts tickets whose id was stored already into duplicates (same content) and conflicts
 * (recorded in the conflicts table), counted in `result`.
 */
async function recordSkipped(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
  skipped: IncomingRow[],
  result: BatchResult,
) {
  if (skipped.length === 0) return;
  const existing = await client.query<StoredTicket & { ticket_id: string }>(
    sql.selectExisting,
    [[...new Set(skipped.map((r) => r.ticket.ticket_id))]],
  );
  const byId = new Map(existing.rows.map((r) => [r.ticket_id, r]));
  const conflicts = skipped.filter((r) => {
    const row = byId.get(r.ticket.ticket_id);
    return !row || !sameTicket(row, r.ticket);
  });
  result.conflicts = conflicts.length;
  result.duplicates = skipped.length - conflicts.length;
  if (conflicts.length > 0) {
    await client.query(sql.insertConflicts, [
      batch.table,
      batch.topic,
      batch.partition,
      conflicts.map((r) => r.ticket.ticket_id),
      conflicts.map((r) => r.offset),
      conflicts.map((r) => toBuffer(r.value)),
    ]);
  }
}

/** Inserts tickets, skipping ids already stored; returns the offsets of the rows inserted. */
async function insertTickets(
  client: PoolClient,
  sql: SinkStatements,
  batch: Batch,
  rows: IncomingRow[],
): Promise<Set<string>> {
  const inserted = await client.query<{ kafka_offset: string }>(
    sql.insertTickets,
    ticketParams(batch, rows),
  );
  return new Set(inserted.rows.map((r) => String(r.kafka_offset)));
}

/** Parameters of a ticket insert: one array per column, plus the batch's topic and partition. */
function ticketParams(batch: Batch, rows: IncomingRow[]): unknown[] {
  const columns: string[][] = TICKET_COLUMNS.map(() => new Array(rows.length));
  for (let i = 0; i < rows.length; i++) {
    ticketTexts(rows[i]!.ticket).forEach((text, c) => (columns[c]![i] = text));
  }
  return [
    ...columns,
    batch.topic,
    batch.partition,
    rows.map((r) => r.offset),
    rows.map((r) => (r.publishedAt ? r.publishedAt.toISOString() : null)),
  ];
}

/** Records the payments of newly stored tickets. */
async function insertTransactions(client: PoolClient, statement: string, rows: IncomingRow[]) {
  await client.query(statement, [
    rows.map((r) => r.ticket.ticket_id),
    rows.map((r) => amountText(r.ticket)),
    rows.map((r) => currencyText(r.ticket)),
    rows.map((r) => purchasedText(r.ticket)),
    uuidv7s(rows.length), // made here, as in paymentLines
  ]);
}

/** Next offset stored for each partition of a topic, for one consumer group. */
export async function storedOffsets(
  client: { query: PoolClient["query"] },
  q: QualifiedNames,
  groupId: string,
  topic: string,
): Promise<Map<number, bigint>> {
  const res = await client.query<{ partition: number; next_offset: string }>(
    `SELECT partition, next_offset FROM ${q.offsets} WHERE group_id = $1 AND topic = $2`,
    [groupId, topic],
  );
  return new Map(res.rows.map((r) => [r.partition, BigInt(r.next_offset)]));
}
