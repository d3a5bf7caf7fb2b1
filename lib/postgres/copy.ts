/**
 * `COPY ... FROM STDIN` through node-postgres (a query object it submits like its own), and the
 * encoding of rows in COPY's text format. PostgreSQL's fastest way in: rows go through batched
 * heap inserts instead of one executor call each, and the client skips array-literal escaping.
 * @module
 */
import { Buffer } from "node:buffer";
import { setImmediate } from "node:timers";
import { messageOf } from "../errors.ts";
import type { PoolClient } from "./postgres.ts";

/** A value of one COPY column; null and undefined are SQL NULL. */
export type CopyValue = string | number | null | undefined;

const SPECIAL = /[\\\t\n\r]/;
const SPECIALS = /[\\\t\n\r]/g;
const ESCAPES: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

/** One value in COPY's text format: backslash, tab, newline and CR escaped, NULL as `\N`. */
export function copyField(value: CopyValue): string {
  if (value === null || value === undefined) return "\\N";
  const text = String(value);
  return SPECIAL.test(text) ? text.replace(SPECIALS, (c) => ESCAPES[c]!) : text;
}

const encoder = new TextEncoder();

/**
 * Rows in COPY's text format, written as UTF-8 straight into a growing buffer, field by field:
 * printable ASCII (nearly every byte of a ticket) is copied a character at a time with the
 * escapes applied on the way; the rest of a field that holds other characters is escaped by
 * {@linkcode copyField} and encoded by `encodeInto`. No line string is built: concatenated lines
 * (ropes) encoded one by one, or pieces joined into one string and encoded, cost more
 * (bench/README.md).
 */
export class CopyWriter {
  #bytes: Uint8Array;
  #length = 0;
  /** Rows ended. */
  rows = 0;

  /** `expectedBytes`: a guess of the total, to allocate once instead of doubling. */
  constructor(expectedBytes = 64 * 1024) {
    this.#bytes = new Uint8Array(expectedBytes);
  }

  /** Writes one value followed by a tab. */
  field(value: string): void {
    this.#put(value);
    this.#bytes[this.#length++] = 0x09;
  }

  /** Writes the row's last value and ends the row. */
  last(value: string): void {
    this.#put(value);
    this.#bytes[this.#length++] = 0x0a;
    this.rows++;
  }

  /** Writes SQL NULL (`\\N`) followed by a tab, or ending the row when `last`. */
  nullField(last = false): void {
    if (this.#bytes.length - this.#length < 3) this.#grow(3);
    this.#bytes[this.#length++] = 0x5c;
    this.#bytes[this.#length++] = 0x4e;
    this.#bytes[this.#length++] = last ? 0x0a : 0x09;
    if (last) this.rows++;
  }

  #put(value: string): void {
    const length = value.length;
    // room for the value's UTF-8 (3 bytes a UTF-16 unit at most; an escape is 2) and a separator
    if (this.#bytes.length - this.#length < length * 3 + 1) this.#grow(length * 3 + 1);
    const bytes = this.#bytes;
    let at = this.#length;
    for (let i = 0; i < length; i++) {
      const c = value.charCodeAt(i);
      if (c >= 0x20 && c < 0x7f) {
        if (c === 0x5c) bytes[at++] = 0x5c; // a backslash is doubled
        bytes[at++] = c;
      } else if (c === 0x09 || c === 0x0a || c === 0x0d) {
        bytes[at++] = 0x5c;
        bytes[at++] = c === 0x09 ? 0x74 : c === 0x0a ? 0x6e : 0x72; // \t \n \r
      } else if (c < 0x80) {
        bytes[at++] = c; // other control characters go as they are
      } else {
        at += encoder.encodeInto(copyField(value.slice(i)), bytes.subarray(at)).written;
        break;
      }
    }
    this.#length = at;
  }

  #grow(room: number): void {
    const grown = new Uint8Array(Math.max(this.#bytes.length * 2, this.#length + room));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }

  /** The encoded rows (a view, not a copy). */
  bytes(): Buffer {
    return Buffer.from(this.#bytes.buffer, 0, this.#length);
  }
}

/** One row in COPY's text format, newline included. */
export function copyLine(values: CopyValue[]): string {
  let line = copyField(values[0]);
  for (let i = 1; i < values.length; i++) line += "\t" + copyField(values[i]);
  return line + "\n";
}

/** Biggest CopyData message sent (PostgreSQL accepts more; smaller keeps socket writes even). */
const CHUNK_BYTES = 1 << 20;

/** The subset of node-postgres's connection a COPY FROM STDIN uses. */
interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(message: string): void;
}

/** The data of a COPY: whole, or pieces made while the server reads the ones sent before. */
export type CopySource = string | Uint8Array | Iterable<Uint8Array>;

/** Resolves after the event loop has run once more: socket writes queued before go out. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A query object node-postgres runs like its own (`client.query(new CopyQuery(...))`): sends a
 * simple-protocol Query whose COPY FROM STDIN statements take `data`'s sources in order, and
 * streams every source followed by CopyDone right behind it, without waiting for the server's
 * CopyInResponse: the server reads a COPY's data when it reaches that statement, so it goes from
 * one statement to the next without waiting for the client. A piece is sent, the event loop runs
 * once (the write leaves, the server starts on it), and only then is the next piece asked for,
 * so that making piece n+1 overlaps the server storing piece n. An error (a unique violation, an
 * exception raised by a statement before the COPYs) ends the Query: the server skips its other
 * statements and ignores the COPY data that still arrives (the protocol says so), no piece is
 * asked for after it, and the connection is usable (within a failed transaction, if one was
 * begun). Reports the row counts of the `COPY n` completions once the server is ready again.
 */
class CopyQuery {
  callback?: (error: Error | null, rows?: number[]) => void;
  readonly #rows: number[] = [];
  #failed = false;

  constructor(readonly text: string, readonly data: Iterable<Uint8Array>[]) {}

  submit(connection: CopyConnection): void {
    connection.query(this.text);
    void this.#send(connection);
  }

  async #send(connection: CopyConnection): Promise<void> {
    for (const source of this.data) {
      try {
        for (const piece of source) {
          if (this.#failed) return;
          for (let at = 0; at < piece.length; at += CHUNK_BYTES) { // none for an empty piece
            const part = piece.subarray(at, at + CHUNK_BYTES);
            connection.sendCopyFromChunk(Buffer.from(part.buffer, part.byteOffset, part.length));
          }
          await nextTurn();
          if (this.#failed) return; // not one more piece asked for
        }
      } catch (error) {
        // making a piece failed: the server ends the COPY with an error naming it
        if (!this.#failed) {
          connection.sendCopyFail(`the client could not make the COPY data: ${messageOf(error)}`);
        }
        return;
      }
      if (this.#failed) return;
      connection.endCopyFrom();
    }
  }

  /** The data is on its way already. */
  handleCopyInResponse(): void {}

  handleCommandComplete(message: { text?: string }): void {
    const copied = /^COPY (\d+)/.exec(message.text ?? "");
    if (copied) this.#rows.push(Number(copied[1]));
  }

  handleReadyForQuery(): void {
    if (!this.#failed) this.callback?.(null, this.#rows);
  }

  handleError(error: Error): void {
    this.#failed = true;
    this.callback?.(error);
  }

  // messages these statements do not get; present because node-postgres may route them here
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

/** The pieces of a COPY's data. */
function piecesOf(data: CopySource): Iterable<Uint8Array> {
  return typeof data === "string"
    ? [Buffer.from(data, "utf8")]
    : data instanceof Uint8Array
    ? [data]
    : data;
}

/**
 * Runs `text`, one or more SQL statements in one simple-protocol Query, of which the statements
 * `COPY ... FROM STDIN` take `data`'s sources in order (one each: as many sources as such
 * statements), streamed right behind the Query (see {@linkcode CopyQuery}). Returns the row
 * counts of the COPYs the server completed. `text` is trusted SQL: no parameters, literals
 * quoted by the caller.
 */
export function copyQuery(
  client: PoolClient,
  text: string,
  data: CopySource[],
): Promise<number[]> {
  const query = new CopyQuery(text, data.map(piecesOf));
  return new Promise<number[]>((resolve, reject) => {
    query.callback = (error, rows) => error ? reject(error) : resolve(rows ?? []);
    // node-postgres accepts any object with submit(); its typings only know its own
    (client as unknown as { query(q: CopyQuery): void }).query(query);
  });
}

/**
 * Runs `COPY <target> FROM STDIN` with `data` as its data: text (lines from
 * {@linkcode copyLine}), bytes (from {@linkcode CopyWriter}), or pieces of bytes made one at a
 * time while the server stores the ones before (see {@linkcode CopyQuery}). Returns the number
 * of rows the server stored. `target` is trusted SQL (quoted names, column list).
 */
export async function copyFrom(
  client: PoolClient,
  target: string,
  data: CopySource,
): Promise<number> {
  const [rows] = await copyQuery(client, `COPY ${target} FROM STDIN`, [data]);
  return rows ?? 0;
}
