/**
 * Kafka Connect's standalone worker with the Debezium JDBC sink connector, run by `dev/connect.sh`
 * as a subprocess: its properties files (in a temp folder, mode 600), the tickets in Kafka
 * Connect's JSON schema envelope, and the process itself.
 * @module
 */
import { join } from "node:path";
import type { Ticket } from "../lib/model/columns.ts";
import { parsePostgresUri } from "../lib/config/postgres_uri.ts";
import { progress, ROOT, runProcess, type StackAccess, tail } from "./common.ts";
import { freePort } from "../testing/testing.ts";

/** The connector class of the Debezium JDBC sink. */
export const DEBEZIUM_JDBC_SINK = "io.debezium.connector.jdbc.JdbcSinkConnector";

/** A field of a Kafka Connect struct schema. */
interface SchemaField {
  field: string;
  type: string;
  optional: false;
  name?: string;
  items?: { type: string; optional: false };
}

const text = (field: string): SchemaField => ({ field, type: "string", optional: false });
/** Debezium's semantic type for an ISO 8601 time with an offset: a timestamptz column. */
const zoned = (field: string): SchemaField => ({
  ...text(field),
  name: "io.debezium.time.ZonedTimestamp",
});

/**
 * The ticket as one flat struct (the JDBC sink writes one row per record and maps no nested
 * struct): the price's two fields become `price_amount` and `price_currency`, seats a text array.
 */
const TICKET_SCHEMA = {
  type: "struct",
  name: "tickets.Ticket",
  optional: false,
  fields: [
    text("ticket_id"),
    text("theater"),
    text("movie"),
    text("name"),
    text("email"),
    text("phone_number"),
    { field: "seats", type: "array", optional: false, items: { type: "string", optional: false } },
    zoned("showtime"),
    { field: "price_amount", type: "double", optional: false },
    text("price_currency"),
    zoned("purchased_at"),
  ] satisfies SchemaField[],
};
const SCHEMA_JSON = JSON.stringify(TICKET_SCHEMA);

/** A ticket as Kafka Connect's `JsonConverter` (schemas.enable=true) reads it: `{schema, payload}`. */
export function connectEnvelope(t: Ticket): string {
  const payload = {
    ticket_id: t.ticket_id,
    theater: t.theater,
    movie: t.movie,
    name: t.name,
    email: t.email,
    phone_number: t.phone_number,
    seats: t.seats,
    showtime: t.showtime,
    price_amount: t.price.amount,
    price_currency: t.price.currency,
    purchased_at: t.purchased_at,
  };
  return `{"schema":${SCHEMA_JSON},"payload":${JSON.stringify(payload)}}`;
}

/**
 * The connector's target table, made beforehand (`schema.evolution=none`), with the same column
 * types as our ticket table and a `stored_at` default the connector does not write: the time of
 * each row's insert, from which its first-row-to-last-row time is read.
 */
export function connectTableDdl(table: string): string {
  return `CREATE TABLE public."${table}" (
    ticket_id text COLLATE "C" PRIMARY KEY,
    theater text NOT NULL, movie text NOT NULL, name text NOT NULL, email text NOT NULL,
    phone_number text NOT NULL, seats text[] NOT NULL, showtime timestamptz NOT NULL,
    price_amount numeric(12,2) NOT NULL, price_currency text NOT NULL,
    purchased_at timestamptz NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp())`;
}

/** Insert mode of the JDBC sink. */
export type ConnectMode = "insert" | "upsert";

/** What one worker run is given. */
export interface ConnectRunConfig {
  /** Connector name (its consumer group is `connect-<name>`). */
  name: string;
  topic: string;
  table: string;
  mode: ConnectMode;
  tasks: number;
  batchSize: number;
  /** Extra or replaced properties (`worker.` prefix for the worker's, else the connector's). */
  overrides?: Record<string, string>;
}

/** The worker's and the connector's properties (the password stays in the files only). */
export function connectProperties(
  access: StackAccess,
  dir: string,
  run: ConnectRunConfig,
  restPort: number,
  pluginPath: string,
): { worker: Record<string, string>; connector: Record<string, string> } {
  const pg = parsePostgresUri(access.connection.postgresUri);
  const ssl: Record<string, string> = access.protocol === "SSL"
    ? {
      "security.protocol": "SSL",
      "ssl.truststore.type": "PEM",
      "ssl.truststore.location": join(access.certPath, "ca.pem"),
      "ssl.keystore.type": "PEM",
      "ssl.keystore.location": join(dir, "keystore.pem"),
    }
    : { "security.protocol": "PLAINTEXT" };
  const worker: Record<string, string> = {
    "bootstrap.servers": access.bootstrap,
    ...ssl,
    // the sink's consumer, and the admin/producer the worker makes, use the same listener
    ...prefixed("consumer.", ssl),
    ...prefixed("admin.", ssl),
    ...prefixed("producer.", ssl),
    "consumer.max.poll.records": String(run.batchSize),
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "true",
    "offset.storage.file.filename": join(dir, `${run.name}.offsets`),
    "offset.flush.interval.ms": "10000",
    "plugin.path": pluginPath,
    "listeners": `http://127.0.0.1:${restPort}`,
    // every plugin here has ServiceLoader manifests: no reflective scan of the jars at start
    "plugin.discovery": "service_load",
  };
  const params = new URLSearchParams({ sslmode: pg.sslmode, reWriteBatchedInserts: "true" });
  const connector: Record<string, string> = {
    name: run.name,
    "connector.class": DEBEZIUM_JDBC_SINK,
    "tasks.max": String(run.tasks),
    topics: run.topic,
    "connection.url": `jdbc:postgresql://${pg.host}:${pg.port}/${pg.database}?${params}`,
    "connection.username": pg.user,
    "connection.password": pg.password ?? "",
    "insert.mode": run.mode,
    "primary.key.mode": run.mode === "upsert" ? "record_value" : "none",
    ...(run.mode === "upsert" ? { "primary.key.fields": "ticket_id" } : {}),
    "schema.evolution": "none",
    "collection.name.format": run.table,
    "batch.size": String(run.batchSize),
    "use.time.zone": "UTC",
  };
  for (const [key, value] of Object.entries(run.overrides ?? {})) {
    if (key.startsWith("worker.")) worker[key.slice("worker.".length)] = value;
    else connector[key] = value;
  }
  return { worker, connector };
}

function prefixed(prefix: string, props: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(props).map(([k, v]) => [prefix + k, v]));
}

/** `key=value` lines of a properties file (values here hold no newline). */
function propertiesText(props: Record<string, string>): string {
  return Object.entries(props).map(([k, v]) => `${k}=${v.replace(/\\/g, "\\\\")}\n`).join("");
}

/** Fetches the worker and connector jars on first use (`dev/connect.sh fetch`). */
export async function ensureConnectJars(): Promise<string> {
  const out = await runProcess("bash", [join(ROOT, "dev/connect.sh"), "fetch"]);
  if (out.code !== 0) throw new Error(`dev/connect.sh fetch failed: ${tail(out.stderr, 5)}`);
  const path = await runProcess("bash", [join(ROOT, "dev/connect.sh"), "plugin-path"]);
  return path.stdout.trim();
}

/** A running standalone worker. */
export class ConnectWorker {
  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;
  #exit: Deno.CommandStatus | undefined;
  #stderr = "";
  /** `performance.now()` when the process was spawned. */
  readonly startedAt = performance.now();
  /** `Date.now()` when the process was spawned. */
  readonly spawnedMs = Date.now();

  /** `logDir`: where the worker writes connect.log (all of it at INFO). */
  private constructor(readonly logDir: string, workerFile: string, connectorFile: string) {
    this.#child = new Deno.Command("bash", {
      args: [join(ROOT, "dev/connect.sh"), "run", workerFile, connectorFile],
      cwd: ROOT,
      env: { CONNECT_LOG_DIR: logDir },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status.then((status) => (this.#exit = status));
    this.#collect();
  }

  async #collect(): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of this.#child.stderr) {
      this.#stderr = (this.#stderr + decoder.decode(chunk)).slice(-20_000);
    }
  }

  /** Writes the properties files into `dir` and starts the worker on them. */
  static async start(
    access: StackAccess,
    dir: string,
    run: ConnectRunConfig,
    pluginPath: string,
  ): Promise<{ worker: ConnectWorker; shown: Record<string, string> }> {
    if (access.protocol === "SSL") {
      const key = await Deno.readTextFile(join(access.certPath, "service.key"));
      const cert = await Deno.readTextFile(join(access.certPath, "service.cert"));
      await Deno.writeTextFile(join(dir, "keystore.pem"), `${key.trim()}\n${cert.trim()}\n`, {
        mode: 0o600,
      });
    }
    const props = connectProperties(access, dir, run, freePort(), pluginPath);
    const workerFile = join(dir, `${run.name}.worker.properties`);
    const connectorFile = join(dir, `${run.name}.connector.properties`);
    await Deno.writeTextFile(workerFile, propertiesText(props.worker), { mode: 0o600 });
    await Deno.writeTextFile(connectorFile, propertiesText(props.connector), { mode: 0o600 });
    progress(`connect: worker for ${run.name} (${run.mode}, ${run.tasks} tasks)`);
    const { "connection.password": _, ...shown } = props.connector;
    const logDir = join(dir, `${run.name}.logs`);
    await Deno.mkdir(logDir);
    return { worker: new ConnectWorker(logDir, workerFile, connectorFile), shown };
  }

  /** Seconds since the spawn. */
  get seconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }

  /** Exit status when the worker has exited, else undefined. */
  get exit(): Deno.CommandStatus | undefined {
    return this.#exit;
  }

  /**
   * Seconds from the spawn to the worker's "Kafka Connect started" log line (its own timestamp,
   * local time to the millisecond); undefined until it is logged.
   */
  async readySeconds(): Promise<number | undefined> {
    let logText: string;
    try {
      logText = await Deno.readTextFile(join(this.logDir, "connect.log"));
    } catch {
      return undefined;
    }
    const m = /^\[(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+),(\d+)\] INFO Kafka Connect started/m
      .exec(logText);
    if (!m) return undefined;
    const [y, mo, d, h, mi, s, ms] = m.slice(1).map(Number) as number[];
    const at = new Date(y!, mo! - 1, d!, h!, mi!, s!, ms!).getTime();
    return (at - this.spawnedMs) / 1000;
  }

  /** The worker's warnings and errors (the console gets WARN and above), last lines. */
  errors(lines = 4): string {
    const causes = this.#stderr.split("\n").filter((l) => /ERROR|Exception|Caused by/.test(l));
    return (causes.length ? causes.slice(-lines).join("\n") : tail(this.#stderr, lines)).trim();
  }

  /** SIGTERM, then SIGKILL after `graceMs`; waits for the exit. */
  async stop(graceMs = 20_000): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      return; // already exited
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }, graceMs);
    await this.#status;
    clearTimeout(timer);
  }
}
