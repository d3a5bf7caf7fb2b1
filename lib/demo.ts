/**
 * The demo: local stack up, auth_setup against it (SSL with client certificates), db_setup,
 * producer --num 10000, consumer until drained, then a short report.
 * @module
 */
import { join } from "node:path";
import { main as authSetup } from "../auth_setup.ts";
import { main as consumer } from "../consumer.ts";
import { main as dbSetup } from "../db_setup.ts";
import { main as producer } from "../producer.ts";
import { AppError } from "./errors.ts";
import { createPool } from "./postgres.ts";
import { qualify } from "./schema.ts";
import { ROOT, stackInfo } from "./testing.ts";

/** Names and sizes of the demo run. */
export interface DemoOptions {
  /** @default {10000} */
  num?: number;
  /** @default {"movie_app"} */
  topic?: string;
  /** @default {"movie_ticket"} */
  table?: string;
}

async function step(title: string, command: string[], run: () => Promise<number>) {
  console.log(`\n== ${title}\n$ deno task ${command.join(" ")}`);
  const code = await run();
  if (code !== 0) {
    throw new AppError("BAD_INPUT", `demo step "${title}" failed with exit code ${code}`);
  }
}

/** Runs the demo; returns the exit code. */
export async function runDemo(options: DemoOptions = {}): Promise<number> {
  const num = options.num ?? 10_000;
  const topic = options.topic ?? "movie_app";
  const table = options.table ?? "movie_ticket";
  console.log("== local stack: Kafka (KRaft, SSL with client certificates) and PostgreSQL (SSL)");
  const up = await new Deno.Command("bash", {
    args: [join(ROOT, "dev/stack.sh"), "up"],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!up.success) {
    throw new AppError(
      "KAFKA_UNREACHABLE",
      "the local stack did not start; see the lines above and .stack/ logs",
    );
  }
  const info = stackInfo();
  const [host, port] = info.kafka.ssl.split(":");
  const creds = join(ROOT, "creds.json");
  const shownUri = info.postgresUri.replace(/:[^:@/]*@/, ":***@");
  await step(
    "auth_setup: save and check the connection settings",
    [
      "auth_setup",
      "--kafka-hostname",
      host!,
      "--kafka-portnumber",
      port!,
      "--cert-path",
      info.certPath,
      "--postgres-uri",
      `'${shownUri}'`,
    ],
    () =>
      authSetup([
        "--kafka-hostname",
        host!,
        "--kafka-portnumber",
        port!,
        "--cert-path",
        info.certPath,
        "--postgres-uri",
        info.postgresUri,
        "--creds",
        creds,
      ]),
  );
  await step(
    "auth_setup --check",
    ["auth_setup", "--check"],
    () => authSetup(["--check", "--creds", creds]),
  );
  await step(
    "db_setup",
    ["db_setup", "--table-name", table],
    () => dbSetup(["--table-name", table, "--creds", creds]),
  );
  await step(
    "producer",
    ["producer", "--topic-name", topic, "--num", String(num)],
    () =>
      producer([
        "--cert-path",
        info.certPath,
        "--topic-name",
        topic,
        "--num",
        String(num),
        "--creds",
        creds,
      ]),
  );
  await step(
    "consumer (until drained: 3 s without new messages)",
    ["consumer", "--topic-name", topic, "--table-name", table, "--idle-timeout", "3"],
    () =>
      consumer([
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
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 1 });
  try {
    const q = qualify({ schema: "public", table });
    const { rows } = await db.pool.query<
      { rows: string; dead: string; conflicts: string; latest: string | null }
    >(
      `SELECT (SELECT count(*) FROM ${q.tickets}) AS rows,
              (SELECT count(*) FROM ${q.deadLetters} WHERE target_table = $1) AS dead,
              (SELECT count(*) FROM ${q.conflicts} WHERE target_table = $1) AS conflicts,
              (SELECT movie || ' at ' || theater || ', seats ' || seats FROM ${q.tickets} ORDER BY stored_at DESC LIMIT 1) AS latest`,
      [table],
    );
    const r = rows[0]!;
    console.log(
      `\n== report\ntable ${q.tickets}: ${r.rows} rows; dead letters: ${r.dead}; conflicts: ${r.conflicts}`,
    );
    if (r.latest) console.log(`latest ticket: ${r.latest}`);
  } finally {
    await db.pool.end();
  }
  console.log(
    "\nThe stack is still running: `deno task tests` runs the menu; `deno task stack down` stops it.",
  );
  return 0;
}
