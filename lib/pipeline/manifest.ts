/**
 * The manifest of a producer run: for every message the broker acknowledged, where it is (topic,
 * partition, offset), its key, what kind of message it is and what the pipeline must make of it.
 * JSON Lines: a header object, then one entry per line, written as acknowledgements arrive and
 * read back in chunks, so neither side holds a large run in memory. `verify --manifest` checks it.
 * @module
 */
import { AppError, messageOf } from "../errors.ts";
import type { Outcome } from "../model/poison.ts";

/** First line of a manifest. */
export interface ManifestHeader {
  manifest: "tickets";
  version: 1;
  seed?: number;
  cancelRate: number;
  poisonRate: number;
}

/** One message the broker acknowledged, and what must become of it. */
export interface ManifestEntry {
  topic: string;
  partition: number;
  offset: number;
  /** The message key (null for none). */
  key: string | null;
  /** `purchase`, `cancel`, or the name of a poison kind (lib/model/poison.ts). */
  kind: string;
  expect: Outcome;
  /** The dead letter's reason (when `expect` is `dead_letter`). */
  reason?: string;
}

const OUTCOMES: readonly Outcome[] = ["stored", "cancelled", "dead_letter"];
const FLUSH_CHARS = 1 << 20;

/** Writes a manifest as entries come; buffered, at most ~1 MB held. */
export class ManifestWriter {
  readonly #file: Deno.FsFile;
  readonly #encoder = new TextEncoder();
  #buffer = "";
  /** Entries written. */
  entries = 0;

  /** Creates (or truncates) `path` and writes the header; a USAGE error if it cannot. */
  constructor(readonly path: string, header: ManifestHeader) {
    try {
      this.#file = Deno.openSync(path, { write: true, create: true, truncate: true });
    } catch (error) {
      // `deno task producer` may write only under logs/ (--allow-write=logs)
      const hint = error instanceof Deno.errors.NotCapable
        ? "; the producer task may write only under logs/: use e.g. --manifest logs/manifest.jsonl"
        : "";
      throw new AppError(
        "USAGE",
        `--manifest ${path}: cannot write it (${messageOf(error)})${hint}`,
        { cause: error },
      );
    }
    this.#buffer = JSON.stringify(header) + "\n";
  }

  /** Adds one entry. */
  add(entry: ManifestEntry): void {
    this.#buffer += JSON.stringify(entry) + "\n";
    this.entries++;
    if (this.#buffer.length >= FLUSH_CHARS) this.#flush();
  }

  #flush(): void {
    const bytes = this.#encoder.encode(this.#buffer);
    this.#buffer = "";
    for (let done = 0; done < bytes.length;) done += this.#file.writeSync(bytes.subarray(done));
  }

  /** Writes what is buffered and closes the file. */
  close(): void {
    try {
      this.#flush();
    } finally {
      this.#file.close();
    }
  }
}

/** Checks one parsed line as an entry; throws BAD_INPUT naming the line. */
function toEntry(o: unknown, line: number, path: string): ManifestEntry {
  const e = o as Partial<ManifestEntry>;
  const problem = typeof o !== "object" || o === null
    ? "not an object"
    : typeof e.topic !== "string"
    ? "topic is not a string"
    : !Number.isSafeInteger(e.partition) || e.partition! < 0
    ? "partition is not a whole number"
    : !Number.isSafeInteger(e.offset) || e.offset! < 0
    ? "offset is not a whole number"
    : e.key !== null && typeof e.key !== "string"
    ? "key is neither a string nor null"
    : typeof e.kind !== "string"
    ? "kind is not a string"
    : !OUTCOMES.includes(e.expect!)
    ? `expect is not one of ${OUTCOMES.join(", ")}`
    : e.expect === "dead_letter" && typeof e.reason !== "string"
    ? "a dead letter without a reason"
    : undefined;
  if (problem) throw new AppError("BAD_INPUT", `manifest ${path} line ${line}: ${problem}`);
  return e as ManifestEntry;
}

/** Reads a manifest: its header, then its entries in chunks of at most `chunk`. */
export async function* readManifest(
  path: string,
  chunk = 5000,
): AsyncGenerator<ManifestEntry[], ManifestHeader | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (error) {
    throw new AppError("USAGE", `--manifest ${path}: cannot read it (${messageOf(error)})`);
  }
  let header: ManifestHeader | undefined;
  let line = 0;
  let rest = "";
  let entries: ManifestEntry[] = [];
  const take = (text: string) => {
    line++;
    if (text.trim() === "") return;
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch {
      throw new AppError("BAD_INPUT", `manifest ${path} line ${line}: not JSON`);
    }
    if (line === 1) {
      if ((o as Partial<ManifestHeader>)?.manifest !== "tickets") {
        throw new AppError("BAD_INPUT", `${path} is not a producer manifest (no header line)`);
      }
      header = o as ManifestHeader;
    } else entries.push(toEntry(o, line, path));
  };
  for await (const text of file.readable.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + text).split("\n");
    rest = lines.pop()!;
    for (const l of lines) take(l);
    if (entries.length >= chunk) {
      yield entries;
      entries = [];
    }
  }
  if (rest !== "") take(rest);
  if (line === 0) throw new AppError("BAD_INPUT", `manifest ${path} is empty`);
  if (entries.length > 0) yield entries;
  return header;
}
