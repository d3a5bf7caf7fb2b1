/** Bad command lines and settings, and secrets: one clear line, the right exit code, no leak. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, runScript, stackInfo, uniqueSuffix } from "../lib/testing.ts";

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
  const canary = `Canary${uniqueSuffix()}Pw`;
  const url = new URL(info.postgresUri);
  url.password = canary;
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
  await run("auth_setup.ts", [
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
  await run("auth_setup.ts", ["--check", "--creds", creds]);
  await run("db_setup.ts", ["--table-name", "t", "--creds", creds]);
  await run("consumer.ts", [
    "--topic-name",
    "t",
    "--table-name",
    "t",
    "--creds",
    creds,
    "--metrics-log",
    metrics,
  ]);
  await run("verify.ts", ["--topic-name", "t", "--table-name", "t", "--creds", creds]);
  // SASL_SSL with a wrong password
  const [saslHost, saslPort] = (info.kafka.saslSsl ?? "127.0.0.1:9094").split(":");
  const sasl = await run("producer.ts", [
    "--topic-name",
    "t",
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
  // the URI with the password appears in no output; the stored creds file holds it (mode 600)
  for (const text of outputs) {
    assert.ok(!text.includes(canary), `canary leaked in: ${text.slice(0, 300)}`);
  }
  try {
    assert.ok(!(await Deno.readTextFile(metrics)).includes(canary));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  assert.equal((await Deno.stat(creds)).mode! & 0o777, 0o600);
});

Deno.test("TLS verification is never switched off in the code", async () => {
  for await (const entry of Deno.readDir(join(ROOT, "lib"))) {
    if (!entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const text = await Deno.readTextFile(join(ROOT, "lib", entry.name));
    assert.doesNotMatch(text, /rejectUnauthorized:\s*false/, entry.name);
  }
});
