/**
 * The safety net behind the parser: when PostgreSQL refuses a batch for its data (a value the
 * parser let through), the batch is split in two by offset, each half written on its own (offset
 * compare-and-set included, so the halves stay exactly once), and so on down to the one message
 * the database refuses, which becomes a `DB_REJECTED` dead letter with the database's error.
 * @module
 */
import { classifyDbError } from "../postgres/postgres.ts";
import {
  addWriteCounts,
  type Batch,
  type BatchResult,
  DB_REJECTED,
  type DeadLetter,
} from "./sink.ts";

/**
 * True for errors of the data itself, which no retry heals and which splitting the batch can pin
 * to one message: SQLSTATE class 22 (data exception: a date out of range, a NUL in text), class
 * 23 (integrity constraint violation) and class 54 (program limit exceeded: an index row too
 * large). Connection, authentication, permission and schema errors are not.
 */
export function isDataError(error: unknown): boolean {
  return classifyDbError(error) === "data";
}

/** One line naming what the database refused: SQLSTATE, message and detail. */
function refusal(error: unknown): string {
  const e = error as { code?: string; message?: string; detail?: string };
  const detail = e.detail ? ` (${e.detail})` : "";
  return `PostgreSQL refused it: ${e.code} ${e.message ?? String(error)}${detail}`.slice(0, 1000);
}

/** A batch's messages, rows, cancellations and dead letters alike, by offset. */
function offsetsOf(batch: Batch): bigint[] {
  return [
    ...batch.rows.map((r) => r.offset),
    ...(batch.cancels ?? []).map((c) => c.offset),
    ...batch.deadLetters.map((d) => d.offset),
  ].map(BigInt).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Messages of a batch: rows, cancellations and dead letters. */
function messagesOf(batch: Batch): number {
  return batch.rows.length + (batch.cancels?.length ?? 0) + batch.deadLetters.length;
}

/** The part of `batch` covering offsets from `from` (inclusive) to `to` (exclusive). */
function slice(batch: Batch, from: bigint, to: bigint): Batch {
  const inside = (offset: string) => BigInt(offset) >= from && BigInt(offset) < to;
  return {
    ...batch,
    expectedOffset: from,
    nextOffset: to,
    rows: batch.rows.filter((r) => inside(r.offset)),
    cancels: batch.cancels?.filter((c) => inside(c.offset)),
    deadLetters: batch.deadLetters.filter((d) => inside(d.offset)),
  };
}

/** Sums the counts of two consecutive parts; committed only if both were. */
function add(a: BatchResult, b: BatchResult): BatchResult {
  return {
    ...addWriteCounts({ ...a }, b),
    committed: a.committed && b.committed,
    messages: (a.messages ?? 0) + (b.messages ?? 0),
  };
}

/**
 * Writes `batch` with `write`; when the database refuses it for its data, bisects as described
 * in the module doc. A result that is not committed means a later part met the fence (another
 * member moved the stored offset): the parts before it are written and counted. Any other error,
 * and a data error in a part holding dead letters only, is thrown.
 */
export async function writeIsolating(
  batch: Batch,
  write: (batch: Batch) => Promise<BatchResult>,
): Promise<BatchResult> {
  try {
    const result = await write(batch);
    return {
      ...result,
      messages: result.committed ? messagesOf(batch) : 0,
    };
  } catch (error) {
    if (!isDataError(error) || batch.rows.length + (batch.cancels?.length ?? 0) === 0) throw error;
    const offsets = offsetsOf(batch);
    if (offsets.length === 1) {
      const row = batch.rows[0] ?? batch.cancels![0]!;
      const letter: DeadLetter = {
        offset: row.offset,
        key: row.key ?? null,
        value: row.value,
        reason: DB_REJECTED,
        detail: refusal(error),
      };
      const result = await write({ ...batch, rows: [], cancels: [], deadLetters: [letter] });
      return { ...result, rejected: result.committed ? 1 : 0, messages: result.committed ? 1 : 0 };
    }
    const middle = offsets[offsets.length >> 1]!;
    const first = await writeIsolating(slice(batch, batch.expectedOffset, middle), write);
    if (!first.committed) return first;
    // the first part stored the offset: the second must find it (see Batch.offsetStored)
    const second = { ...slice(batch, middle, batch.nextOffset), offsetStored: true };
    return add(first, await writeIsolating(second, write));
  }
}
