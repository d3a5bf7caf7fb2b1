/**
 * Credentials end to end, against the stack: the PostgreSQL password kept out of the command line
 * (a URI without one, plus libpq's PGPASSWORD or a pgpass file), and a creds.json in the original
 * Python auth_setup.py's list form. No password may appear in any output.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runProducer } from "../lib/pipeline/producer.ts";
import { qualify } from "../lib/postgres/schema.ts";
import {
  consumerArgs,
  consumerCounts,
  deleteTopics,
  dropPipeline,
  runScript,
  type ScriptResult,
  sql,
  stackConnection,
  stackCreds,
  stackInfo,
  uniqueSuffix,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

/** The stack's URI without its password, and the password. */
function splitPassword(uri: string): { uri: string; password: string } {
  const url = new URL(uri);
  const password = decodeURIComponent(url.password);
  url.password = "";
  assert.ok(password.length >= 4, "the stack's PostgreSQL URI has no password to keep out");
  return { uri: url.toString(), password };
}

/** A pgpass line field: `:` and `\` escaped as libpq reads them. */
const pgpassField = (text: string) => text.replace(/[\\:]/g, (c) => `\\${c}`);

/** Runs a script with `env`; asserts the run printed no `secrets`. */
async function run(
  script: string,
  args: string[],
  env: Record<string, string>,
  secrets: string[],
): Promise<ScriptResult> {
  const result = await runScript(script, args, env);
  for (const secret of secrets) {
    assert.ok(
      !result.stdout.includes(secret) && !result.stderr.includes(secret),
      `${script} printed a password`,
    );
  }
  return result;
}

async function rows(table: string): Promise<number> {
  const [row] = await sql<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${qualify({ schema: "public", table }).tickets}`,
  );
  return row!.n;
}

Deno.test("a PostgreSQL URI without password works with PGPASSWORD and with a pgpass file in every script", async (t) => {
  assert.equal(Deno.env.get("PGPASSWORD"), undefined, "this test needs PGPASSWORD unset");
  const info = stackInfo();
  const { uri, password } = splitPassword(info.postgresUri);
  const creds = await writeStackCreds({ ...stackCreds(), postgres: { uri } });
  const dir = await Deno.makeTempDir({ prefix: "tickets-pgpass-" });
  const passfile = join(dir, "pgpass");
  const target = new URL(uri);
  await Deno.writeTextFile(
    passfile,
    `# host:port:database:user:password\n${target.hostname}:${target.port}:*:${
      pgpassField(decodeURIComponent(target.username))
    }:${pgpassField(password)}\n`,
    { mode: 0o600 },
  );
  await Deno.chmod(passfile, 0o600);
  const nowhere = join(dir, "no-such-pgpass");
  const ways: Array<[string, Record<string, string>]> = [
    ["PGPASSWORD", { PGPASSWORD: password, PGPASSFILE: nowhere }],
    ["PGPASSFILE", { PGPASSFILE: passfile }],
  ];
  const wrong = `canary-wrong-${uniqueSuffix()}`;
  const secrets = [password, wrong];
  const id = uniqueSuffix();
  const table = `pw_${id}`;
  const topic = `pw_${id}`;
  const connection = await stackConnection();
  try {
    await t.step("auth_setup --check connects with either", async () => {
      for (const [way, env] of ways) {
        const check = await run("auth_setup.ts", ["--check", "--creds", creds], env, secrets);
        assert.equal(check.code, 0, `${way}: ${check.stdout}${check.stderr}`);
        assert.match(check.stdout, /^postgres: ok \(postgres:\/\/[^:@]+@127\.0\.0\.1/m, way);
      }
    });

    await t.step("without any password the scripts name PGPASSWORD and ~/.pgpass", async () => {
      const check = await run("auth_setup.ts", ["--check", "--creds", creds], {
        PGPASSFILE: nowhere,
      }, secrets);
      assert.equal(check.code, 1);
      assert.match(check.stdout, /postgres: FAILED: .*none was given: set PGPASSWORD.*~\/\.pgpass/);
      const setup = await run("db_setup.ts", ["--creds", creds, "--table-name", table], {
        PGPASSFILE: nowhere,
      }, secrets);
      assert.equal(setup.code, 1, setup.stderr);
      assert.match(setup.stderr, /none was given: set PGPASSWORD/);
      const bad = await run("db_setup.ts", ["--creds", creds, "--table-name", table], {
        PGPASSWORD: wrong,
      }, secrets);
      assert.equal(bad.code, 1, bad.stderr);
      assert.match(bad.stderr, /rejected the password .*check the password in PGPASSWORD/);
    });

    await t.step("db_setup creates the tables with either", async () => {
      for (const [way, env] of ways) {
        const setup = await run(
          "db_setup.ts",
          ["--creds", creds, "--table-name", table],
          env,
          secrets,
        );
        assert.equal(setup.code, 0, `${way}: ${setup.stderr}`);
      }
      assert.equal(await rows(table), 0);
    });

    await t.step("the consumer stores with either; verify and dlq read with either", async () => {
      let total = 0;
      for (const [way, env] of ways) {
        await runProducer({ kafka: connection.kafka, topic, num: 150, seed: total + 1 });
        total += 150;
        const consumer = await run(
          "consumer.ts",
          consumerArgs({ creds, topic, table }, "--idle-timeout", "3"),
          env,
          secrets,
        );
        assert.equal(consumer.code, 0, `${way}: ${consumer.stderr}`);
        assert.equal(consumerCounts(consumer.stdout).stored, 150, way);
        assert.equal(await rows(table), total, way);
        const verify = await run(
          "verify.ts",
          ["--creds", creds, "--topic-name", topic, "--table-name", table],
          env,
          secrets,
        );
        assert.equal(verify.code, 0, `${way}: ${verify.stdout}${verify.stderr}`);
        const dlq = await run(
          "dlq.ts",
          ["list", "--creds", creds, "--table-name", table],
          env,
          secrets,
        );
        assert.equal(dlq.code, 0, `${way}: ${dlq.stderr}`);
      }
    });
  } finally {
    await dropPipeline(table);
    await deleteTopics(connection, [topic]);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("producer and consumer run from a creds.json in the original auth_setup.py list form", async () => {
  const info = stackInfo();
  const [host, port] = info.kafka.ssl.split(":");
  const { password } = splitPassword(info.postgresUri);
  const dir = await Deno.makeTempDir({ prefix: "tickets-original-creds-" });
  const creds = join(dir, "creds.json");
  // what the original wrote: json.dump of a list with one object, the port as typed
  const original = JSON.stringify([
    { KAFKA_HOST: host, KAFKA_PORT: port, POSTGRES_URI: info.postgresUri },
  ]);
  await Deno.writeTextFile(creds, original, { mode: 0o600 });
  await Deno.chmod(creds, 0o600);
  const notice = /creds file .* is in the original auth_setup\.py form.*run auth_setup/g;
  await withPipeline("orig_creds", async ({ topic, table }) => {
    const producer = await run(
      "producer.ts",
      [
        "--creds",
        creds,
        "--cert-path",
        info.certPath,
        "--topic-name",
        topic,
        "--num",
        "200",
        "--no-metrics-log",
      ],
      {},
      [password],
    );
    assert.equal(producer.code, 0, producer.stderr);
    assert.equal(producer.stderr.match(notice)?.length, 1, `one notice: ${producer.stderr}`);
    const consumer = await run(
      "consumer.ts",
      consumerArgs({ creds, topic, table }, "--cert-path", info.certPath, "--idle-timeout", "3"),
      {},
      [password],
    );
    assert.equal(consumer.code, 0, consumer.stderr);
    assert.equal(consumer.stderr.match(notice)?.length, 1, `one notice: ${consumer.stderr}`);
    const counts = consumerCounts(consumer.stdout);
    assert.deepEqual([counts.received, counts.stored, counts.deadLetters], [200, 200, 0]);
    assert.equal(await rows(table), 200);
  });
  assert.equal(await Deno.readTextFile(creds), original, "the creds file was rewritten");
  await Deno.remove(dir, { recursive: true });
});
