/** Bad command lines and settings, and secrets: one clear line, the right exit code, no leak. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createPool } from "../lib/postgres/postgres.ts";
import { CONSUMER_DEFAULTS } from "../lib/pipeline/consumer.ts";
import { PRODUCER_DEFAULTS } from "../lib/pipeline/producer.ts";
import {
  deleteTopics,
  ROOT,
  runScript,
  sql,
  stackConnection,
  stackInfo,
  uniqueSuffix,
} from "../testing/testing.ts";

const SCRIPTS = [
  "auth_setup.ts",
  "db_setup.ts",
  "producer.ts",
  "consumer.ts",
  "tests.ts",
  "verify.ts",
  "report.ts",
];

Deno.test("every script answers --help and rejects an unknown flag with the list of known ones", async () => {
  for (const script of SCRIPTS) {
    const help = await runScript(script, ["--help"]);
    assert.equal(help.code, 0, `${script}: ${help.stderr}`);
    assert.match(help.stdout, /^Usage: /m);
    const bad = await runScript(script, ["--no-such-flag"]);
    assert.equal(bad.code, 2, script);
    assert.match(bad.stderr, /^error: Unknown option '--no-such-flag'; known flags: --/);
    assert.equal(bad.stderr.trim().split("\n").length, 1, `${script} printed more than one line`);
  }
  const dlq = await runScript("dlq.ts", ["list", "--no-such-flag"]);
  assert.equal(dlq.code, 2);
});

Deno.test("--help shows the defaults the command applies, from the same constants", async () => {
  const consumer = await runScript("consumer.ts", ["--help"]);
  assert.match(
    consumer.stdout,
    new RegExp(`--batch-size VALUE .*\\(default: ${CONSUMER_DEFAULTS.batchSize}; 1-100000\\)`),
  );
  assert.match(
    consumer.stdout,
    new RegExp(`--session-timeout VALUE .*\\(default: ${CONSUMER_DEFAULTS.sessionTimeoutSeconds};`),
  );
  const producer = await runScript("producer.ts", ["--help"]);
  assert.match(
    producer.stdout,
    new RegExp(`--batch-size VALUE .*\\(default: ${PRODUCER_DEFAULTS.batchSize}; 1-100000\\)`),
  );
  assert.match(producer.stdout, /--compression VALUE .*\(none \| gzip; default: none\)/);
});

Deno.test("bad values are each named, all at once, before anything connects", async () => {
  const r = await runScript("consumer.ts", [
    "--topic-name",
    "bad topic",
    "--table-name",
    "t",
    "--batch-size",
    "0",
    "--idle-timeout=0",
    "--creds",
    "/nonexistent",
  ]);
  assert.equal(r.code, 2);
  for (
    const part of [/--topic-name "bad topic"/, /--batch-size must be/, /--idle-timeout must be/]
  ) assert.match(r.stderr, part);
});

async function timed(script: string, args: string[]) {
  const started = performance.now();
  const r = await runScript(script, args);
  return { ...r, seconds: (performance.now() - started) / 1000 };
}

Deno.test("unreachable services fail in one line within the connect timeout", async (t) => {
  const info = stackInfo();
  const common = [
    "--cert-path",
    info.certPath,
    "--postgres-uri",
    info.postgresUri,
    "--creds",
    "/nonexistent",
    "--connect-timeout",
    "3",
  ];
  const cases: [string, string[], RegExp][] = [
    ["unknown Kafka host", [
      "--kafka-hostname",
      "no-such-host.invalid",
      "--kafka-portnumber",
      "9093",
    ], /unknown Kafka host|no answer from Kafka/],
    [
      "closed Kafka port",
      ["--kafka-hostname", "127.0.0.1", "--kafka-portnumber", "1"],
      /connection refused/,
    ],
  ];
  for (const [name, args, expected] of cases) {
    await t.step(name, async () => {
      const r = await timed("producer.ts", [
        "--topic-name",
        `cli_${uniqueSuffix()}`,
        "--num",
        "1",
        ...args,
        ...common,
      ]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, expected);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.ok(r.seconds < 15, `took ${r.seconds} s`);
    });
  }
  await t.step("closed PostgreSQL port", async () => {
    const r = await timed("db_setup.ts", [
      "--table-name",
      "t",
      "--postgres-uri",
      "postgres://u:p@127.0.0.1:1/db?sslmode=require",
      "--creds",
      "/nonexistent",
      "--connect-timeout",
      "3",
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: cannot reach PostgreSQL at 127\.0\.0\.1:1: connection refused/);
  });
  await t.step("a PostgreSQL URI that is not one", async () => {
    const r = await timed("db_setup.ts", [
      "--table-name",
      "t",
      "--postgres-uri",
      "http://example.com/x",
      "--creds",
      "/nonexistent",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /scheme must be postgres:\/\//);
  });
});

Deno.test("no password appears in any output, error or metrics file (canary passwords)", async () => {
  const info = stackInfo();
  const suffix = uniqueSuffix();
  // A PostgreSQL role of its own whose password is the canary, so that every run succeeds and
  // writes its metrics (a wrong password would stop each run before it opens the metrics file).
  const role = `canary_${suffix}`;
  const schema = `canary_${suffix}`;
  const topic = `cli_canary_${suffix}`;
  const canary = `Canary${uniqueSuffix()}Pw`;
  const url = new URL(info.postgresUri);
  url.username = role;
  url.password = canary;
  const [database] = await sql<{ name: string }>(`SELECT current_database() AS name`);
  await sql(`CREATE ROLE ${role} LOGIN PASSWORD '${canary}'`);
  await sql(`GRANT CREATE ON DATABASE ${database!.name} TO ${role}`); // db_setup makes the schema
  const dir = await Deno.makeTempDir();
  const metrics = join(dir, "metrics.jsonl");
  const creds = join(dir, "creds.json");
  const [host, port] = info.kafka.ssl.split(":");
  const outputs: string[] = [];
  const run = async (script: string, args: string[], env: Record<string, string> = {}) => {
    const r = await runScript(script, [...args, "--debug"], env);
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const succeeds = async (script: string, args: string[]) => {
    const r = await run(script, args);
    assert.equal(r.code, 0, `${script}: ${r.stdout}${r.stderr}`);
    return r;
  };
  try {
    await succeeds("auth_setup.ts", [
      "--kafka-hostname",
      host!,
      "--kafka-portnumber",
      port!,
      "--cert-path",
      info.certPath,
      "--postgres-uri",
      url.toString(),
      "--creds",
      creds,
    ]);
    await succeeds("auth_setup.ts", ["--check", "--creds", creds]);
    const names = ["--table-name", "t", "--schema", schema, "--creds", creds];
    await succeeds("db_setup.ts", names);
    await succeeds("producer.ts", [
      "--topic-name",
      topic,
      "--num",
      "50",
      "--creds",
      creds,
      "--metrics-log",
      metrics,
    ]);
    const consumer = await succeeds("consumer.ts", [
      ...names,
      "--topic-name",
      topic,
      "--idle-timeout",
      "3",
      "--metrics-log",
      metrics,
    ]);
    assert.match(consumer.stdout, /stored 50,/);
    const verify = await succeeds("verify.ts", [...names, "--topic-name", topic]);
    assert.match(verify.stdout, /verify: OK/);
    // the metrics file holds both runs, start to end, successful
    const records = (await Deno.readTextFile(metrics)).trim().split("\n").map((l) => JSON.parse(l));
    for (const role of ["producer", "consumer"]) {
      const events = records.filter((r) => r.role === role).map((r) => r.event);
      assert.equal(events[0], "start", `${role}: ${events}`);
      assert.equal(events.at(-1), "end", `${role}: ${events}`);
      assert.equal(records.filter((r) => r.role === role).at(-1).outcome, "ok");
    }
    outputs.push(await Deno.readTextFile(metrics));
    // a wrong PostgreSQL password fails, and does not show either
    const wrong = new URL(url);
    wrong.password = `Wrong${canary}`;
    const refused = await run("db_setup.ts", [
      "--table-name",
      "t",
      "--schema",
      schema,
      "--postgres-uri",
      wrong.toString(),
      "--cert-path",
      info.certPath,
      "--creds",
      "/nonexistent",
    ]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /password/);
    // SASL_SSL with a wrong password
    const [saslHost, saslPort] = (info.kafka.saslSsl ?? "127.0.0.1:9094").split(":");
    const sasl = await run("producer.ts", [
      "--topic-name",
      topic,
      "--num",
      "1",
      "--security-protocol",
      "SASL_SSL",
      "--kafka-hostname",
      saslHost!,
      "--kafka-portnumber",
      saslPort!,
      "--cert-path",
      info.certPath,
      "--creds",
      "/nonexistent",
      "--connect-timeout",
      "5",
    ], { KAFKA_SASL_USERNAME: "avnadmin", KAFKA_SASL_PASSWORD: canary });
    assert.equal(sasl.code, 1);
    assert.match(sasl.stderr, /SASL user name or password/);
    // the password appears in no output and no metrics record; the creds file holds it (mode 600)
    for (const text of outputs) {
      const at = text.indexOf(canary);
      assert.ok(at < 0, `canary leaked in: ${text.slice(Math.max(0, at - 200), at + 100)}`);
    }
    assert.ok((await Deno.readTextFile(creds)).includes(canary));
    assert.equal((await Deno.stat(creds)).mode! & 0o777, 0o600);
  } finally {
    // the role drops what it owns; then the role goes
    const own = await createPool({ uri: url.toString(), certPath: info.certPath, max: 1 });
    await own.pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => own.pool.end());
    await sql(`REVOKE CREATE ON DATABASE ${database!.name} FROM ${role}`);
    await sql(`DROP ROLE ${role}`);
    await deleteTopics(await stackConnection(), [topic]);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TLS verification is never switched off in the code", async () => {
  for await (const entry of Deno.readDir(join(ROOT, "lib"))) {
    if (!entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const text = await Deno.readTextFile(join(ROOT, "lib", entry.name));
    assert.doesNotMatch(text, /rejectUnauthorized:\s*false/, entry.name);
  }
});
