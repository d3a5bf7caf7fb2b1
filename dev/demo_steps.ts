/**
 * The demo: local stack up, auth_setup against it (SSL with client certificates), db_setup,
 * producer --num 10000 with a few cancellations and a little named poison (and its manifest),
 * consumer until drained, verify --manifest, then a short report: stored, cancelled, refunded,
 * dead letters by reason. The database is the embedded PostgreSQL (PGlite, no system install)
 * unless `--postgres server` (Debian's PostgreSQL with SSL) or `--postgres-uri` says otherwise;
 * Kafka is always the real broker.
 * @module
 */
import { dirname, join, relative } from "node:path";
import { COMMANDS } from "../lib/commands.ts";
import { defineCommand, parseCommandLine } from "../lib/cli/cli.ts";
import { checkPostgresUri } from "../lib/config/config.ts";
import { AppError } from "../lib/errors.ts";
import { redact } from "../lib/log.ts";
import { createPool } from "../lib/postgres/postgres.ts";
import { qualify, REFUNDED } from "../lib/postgres/schema.ts";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { PIPELINE_FLAGS } from "../lib/commands/flags.ts";
import { ROOT, stackInfo } from "./stack_info.ts";

/** Which PostgreSQL the demo stores the tickets in. */
export type DemoDatabase = "embedded" | "server";

/** Names and sizes of the demo run. */
export interface DemoOptions {
  /** @default {10000} */
  num?: number;
  /** @default {"movie_app"} */
  topic?: string;
  /** @default {"movie_ticket"} */
  table?: string;
  /**
   * `embedded`: PGlite started by the stack (no TLS, loopback); `server`: Debian's PostgreSQL with
   * SSL. Ignored when `postgresUri` is given. @default {"embedded"}
   */
  postgres?: DemoDatabase;
  /** Any PostgreSQL instead of the stack's; only Kafka is started then. */
  postgresUri?: string;
  /** Creds file the demo writes and the steps read. @default {"<repo>/creds.json"} */
  creds?: string;
  /** Share of the tickets cancelled later in the run (producer --cancel-rate). @default {0.02} */
  cancelRate?: number;
  /** Share of the messages replaced by named poison (producer --poison-rate). @default {0.01} */
  poisonRate?: number;
  /**
   * The producer's manifest, which `verify --manifest` checks after the consumer.
   * @default {"<repo>/logs/demo_manifest.jsonl"}
   */
  manifest?: string;
}

/** Defaults of {@linkcode DemoOptions}; the demo's flags show and apply the same values. */
export const DEMO_DEFAULTS = {
  num: 10_000,
  topic: "movie_app",
  table: "movie_ticket",
  postgres: "embedded",
  cancelRate: 0.02,
  poisonRate: 0.01,
} as const satisfies DemoOptions;

/** `deno task demo`. */
export const DEMO_SPEC = defineCommand({
  name: "demo",
  summary: "run the whole pipeline on the local stack: auth_setup, db_setup, producer, consumer",
  flags: {
    "postgres": {
      type: "choice",
      description:
        "embedded: PGlite, no system install; server: Debian's PostgreSQL with SSL, as the tests",
      choices: ["embedded", "server"] satisfies DemoDatabase[],
      defaultLabel: DEMO_DEFAULTS.postgres,
    },
    "postgres-uri": {
      type: "string",
      description: "use this PostgreSQL instead of the stack's (only Kafka is started)",
    },
    "num": {
      type: "integer",
      description: "tickets to publish and store",
      default: DEMO_DEFAULTS.num,
      min: 1,
      max: 10_000_000,
    },
    "topic-name": {
      ...PIPELINE_FLAGS["topic-name"],
      description: "topic to publish to",
      required: false,
      default: DEMO_DEFAULTS.topic,
    },
    "table-name": {
      ...PIPELINE_FLAGS["table-name"],
      description: "ticket table",
      required: false,
      default: DEMO_DEFAULTS.table,
    },
    "creds": {
      type: "string",
      description: "creds file to write and use",
      defaultLabel: "creds.json in the repository",
    },
    "cancel-rate": {
      type: "number",
      description: "share of the tickets cancelled later in the run (0: none)",
      default: DEMO_DEFAULTS.cancelRate,
      min: 0,
      max: 1,
    },
    "poison-rate": {
      type: "number",
      description: "share of the messages replaced by named bad data with known outcomes (0: none)",
      default: DEMO_DEFAULTS.poisonRate,
      min: 0,
      max: 1,
    },
    "manifest": {
      type: "string",
      description: "the producer's manifest of expected outcomes, checked by verify --manifest",
      defaultLabel: "logs/demo_manifest.jsonl in the repository",
    },
  },
  examples: [
    "deno task demo",
    "deno task demo --postgres server",
    "deno task demo --cancel-rate 0 --poison-rate 0   (only purchases, every ticket stored)",
    "deno task demo --postgres-uri 'postgres://avnadmin@pg-x.aivencloud.com:11339/defaultdb?sslmode=require'   (password from ~/.pgpass or PGPASSWORD)",
  ],
});

/** Parses the demo's command line; undefined after `--help`. */
export function parseDemoArgs(args: string[]): DemoOptions | undefined {
  const values = parseCommandLine(DEMO_SPEC, args, {
    check: (values, problems) => {
      if (values["postgres-uri"] !== undefined && values.postgres !== undefined) {
        problems.add("give either --postgres or --postgres-uri, not both");
      }
      checkPostgresUri(problems, "--postgres-uri", values["postgres-uri"]);
    },
  });
  if (!values) return undefined;
  return {
    num: values.num,
    topic: values["topic-name"],
    table: values["table-name"],
    postgres: values.postgres,
    postgresUri: values["postgres-uri"],
    creds: values.creds,
    cancelRate: values["cancel-rate"],
    poisonRate: values["poison-rate"],
    manifest: values.manifest,
  };
}

/** Runs the demo with command-line arguments; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const options = parseDemoArgs(args);
  return options ? await runDemo(options) : 0;
}

async function step(title: string, command: string[], run: () => Promise<number>) {
  console.log(`\n== ${title}\n$ deno task ${command.join(" ")}`);
  const code = await run();
  if (code !== 0) {
    throw new AppError("BAD_INPUT", `demo step "${title}" failed with exit code ${code}`);
  }
}

/**
 * Runs the demo; returns the exit code. Without options it reads them from the command line
 * (`deno task demo --postgres server`).
 */
export async function runDemo(options?: DemoOptions): Promise<number> {
  if (!options) return await main(Deno.args);
  const started = performance.now();
  const num = options.num ?? DEMO_DEFAULTS.num;
  const topic = options.topic ?? DEMO_DEFAULTS.topic;
  const table = options.table ?? DEMO_DEFAULTS.table;
  const database = options.postgresUri ? "uri" : options.postgres ?? DEMO_DEFAULTS.postgres;
  const stackArgs = database === "uri"
    ? ["up", "kafka"]
    : database === "server"
    ? ["up", "--postgres", "server"]
    : ["up"];
  console.log(
    database === "embedded"
      ? "== local stack: Kafka (KRaft, SSL with client certificates) and the embedded PostgreSQL (PGlite)"
      : database === "server"
      ? "== local stack: Kafka (KRaft, SSL with client certificates) and PostgreSQL (SSL)"
      : "== local stack: Kafka (KRaft, SSL with client certificates); PostgreSQL from --postgres-uri",
  );
  const up = await new Deno.Command("bash", {
    args: [join(ROOT, "dev/stack.sh"), ...stackArgs],
    env: { DENO: Deno.execPath() }, // the embedded PostgreSQL runs on this Deno
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!up.success) {
    throw new AppError(
      "KAFKA_UNREACHABLE",
      "the local stack did not start; see the lines above and .stack/ logs",
    );
  }
  const info = stackInfo() as ReturnType<typeof stackInfo> & { embeddedPostgresUri?: string };
  const postgresUri = database === "uri"
    ? options.postgresUri!
    : database === "server"
    ? info.postgresUri
    : info.embeddedPostgresUri;
  if (!postgresUri) {
    throw new AppError(
      "DB_UNREACHABLE",
      ".stack/stack.json has no embeddedPostgresUri; run `deno task stack up` again",
    );
  }
  const [host, port] = info.kafka.ssl.split(":");
  const creds = options.creds ?? join(ROOT, "creds.json");
  const setup = [
    "--kafka-hostname",
    host!,
    "--kafka-portnumber",
    port!,
    "--cert-path",
    info.certPath,
    "--postgres-uri",
  ];
  await step(
    "auth_setup: save and check the connection settings",
    // what the user would type, the password left out
    ["auth_setup", ...setup, `'${redact(postgresUri)}'`],
    () => COMMANDS.auth_setup([...setup, postgresUri, "--creds", creds]),
  );
  await step(
    "auth_setup --check",
    ["auth_setup", "--check"],
    () => COMMANDS.auth_setup(["--check", "--creds", creds]),
  );
  await step(
    "db_setup",
    ["db_setup", "--table-name", table],
    () => COMMANDS.db_setup(["--table-name", table, "--creds", creds]),
  );
  const cancelRate = String(options.cancelRate ?? DEMO_DEFAULTS.cancelRate);
  const poisonRate = String(options.poisonRate ?? DEMO_DEFAULTS.poisonRate);
  const manifest = options.manifest ?? join(ROOT, "logs/demo_manifest.jsonl");
  await Deno.mkdir(dirname(manifest), { recursive: true });
  const lifecycle = ["--cancel-rate", cancelRate, "--poison-rate", poisonRate];
  await step(
    "producer (a few tickets cancelled later, a little named poison; the manifest says what " +
      "must become of each message)",
    [
      ...["producer", "--topic-name", topic, "--num", String(num), ...lifecycle],
      ...["--manifest", relative(ROOT, manifest)],
    ],
    () =>
      COMMANDS.producer([
        ...["--cert-path", info.certPath, "--topic-name", topic, "--num", String(num)],
        ...[...lifecycle, "--manifest", manifest, "--creds", creds],
      ]),
  );
  await step(
    "consumer (until the topic is drained and 3 s pass without new messages)",
    ["consumer", "--topic-name", topic, "--table-name", table, "--idle-timeout", "3"],
    () =>
      COMMANDS.consumer([
        "--cert-path",
        info.certPath,
        "--topic-name",
        topic,
        "--table-name",
        table,
        "--idle-timeout",
        "3",
        "--creds",
        creds,
      ]),
  );
  await step(
    "verify --manifest: every message's outcome in the database as the manifest says",
    ["verify", "--manifest", relative(ROOT, manifest), "--table-name", table],
    () => COMMANDS.verify(["--manifest", manifest, "--table-name", table, "--creds", creds]),
  );
  await printDemoReport(postgresUri, info.certPath, table);
  console.log(`demo finished in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  console.log(
    database === "embedded"
      ? "\nThe stack is still running: `deno task tests` runs the menu; `deno task stack down embedded` stops the embedded PostgreSQL, `deno task stack down` everything."
      : "\nThe stack is still running: `deno task tests` runs the menu; `deno task stack down` stops it.",
  );
  return 0;
}

/** What the demo's table holds, as its closing report counts it. */
interface DemoCounts {
  rows: string;
  cancelled: string;
  refunded: string;
  conflicts: string;
  latest: string | null;
}

/**
 * The demo's closing report: stored and cancelled tickets, refunded payments, dead letters by
 * reason and conflicts of the demo's group, the latest ticket.
 */
async function printDemoReport(uri: string, certPath: string, table: string): Promise<void> {
  const db = await createPool({ uri, certPath, max: 1 });
  try {
    const q = qualify({ schema: "public", table });
    const { rows } = await db.pool.query<DemoCounts>(
      `SELECT (SELECT count(*) FROM ${q.tickets}) AS rows,
              (SELECT count(*) FROM ${q.tickets} WHERE status = 'cancelled') AS cancelled,
              (SELECT count(*) FROM ${q.transactions} WHERE status = $2) AS refunded,
              (SELECT count(*) FROM ${q.conflicts} WHERE target_table = $1) AS conflicts,
              (SELECT movie || ' at ' || theater || ', seats ' || seats FROM ${q.tickets}
                WHERE status = 'purchased' ORDER BY stored_at DESC LIMIT 1) AS latest`,
      [table, REFUNDED],
    );
    const letters = (await db.pool.query<{ reason: string; n: number }>(
      `SELECT reason, count(*)::int AS n FROM ${q.deadLetters} WHERE group_id = $1
       GROUP BY reason ORDER BY count(*) DESC, reason`,
      [defaultGroupId("public", table)],
    )).rows;
    const r = rows[0]!;
    const dead = letters.reduce((sum, l) => sum + l.n, 0);
    const stored = Number(r.rows) - Number(r.cancelled);
    console.log(
      `\n== report\ntable ${q.tickets} in ${db.label}: ${r.rows} rows; stored ${stored}, ` +
        `cancelled ${r.cancelled} (refunded ${r.refunded}); conflicts: ${r.conflicts}`,
    );
    console.log(
      `dead letters: ${dead}${
        dead ? ` (${letters.map((l) => `${l.n} ${l.reason}`).join(", ")})` : ""
      }`,
    );
    console.log("verify --manifest: OK, every outcome matches the manifest");
    if (r.latest) console.log(`latest ticket: ${r.latest}`);
  } finally {
    await db.pool.end();
  }
}
