import assert from "node:assert/strict";
import { join } from "node:path";
import { isValidHost, resolveConnection } from "./config.ts";
import { writeCreds } from "./creds.ts";
import { AppError } from "../errors.ts";
import { parsePostgresUri } from "./postgres_uri.ts";
import { tlsOptions } from "../postgres/postgres.ts";

const creds = {
  kafka: {
    hostname: "kafka-saved.example.com",
    port: 1111,
    securityProtocol: "PLAINTEXT" as const,
  },
  postgres: { uri: "postgres://u:saved@db.example.com:5432/defaultdb?sslmode=require" },
};
const noEnv = { get: () => undefined };

async function credsFile(mode = 0o600): Promise<string> {
  const path = join(await Deno.makeTempDir(), "creds.json");
  await writeCreds(path, creds);
  await Deno.chmod(path, mode);
  return path;
}

Deno.test("resolveConnection() takes flag over environment over creds file", async () => {
  const path = await credsFile();
  const fromCreds = resolveConnection({ creds: path }, { kafka: true, postgres: true }, noEnv);
  assert.deepEqual(fromCreds.kafka.brokers, ["kafka-saved.example.com:1111"]);
  const env = new Map([["KAFKA_HOSTNAME", "kafka-env.example.com"], ["KAFKA_PORTNUMBER", "2222"]]);
  const fromEnv = resolveConnection({ creds: path }, { kafka: true }, env);
  assert.deepEqual(fromEnv.kafka.brokers, ["kafka-env.example.com:2222"]);
  const fromFlag = resolveConnection({ creds: path, "kafka-hostname": "flag.example.com" }, {
    kafka: true,
  }, env);
  assert.deepEqual(fromFlag.kafka.brokers, ["flag.example.com:2222"]);
  assert.equal(fromFlag.connectTimeoutMs, 10_000);
});

Deno.test("resolveConnection() refuses a creds file readable by others, naming chmod", async () => {
  const path = await credsFile(0o644);
  assert.throws(
    () => resolveConnection({ creds: path }, { kafka: true }, noEnv),
    (e) => e instanceof AppError && e.message.includes(`chmod 600 ${path}`),
  );
});

Deno.test("resolveConnection() reports every missing setting at once", () => {
  assert.throws(
    () =>
      resolveConnection(
        { creds: "/nonexistent/creds.json" },
        { kafka: true, postgres: true },
        noEnv,
      ),
    (e) =>
      e instanceof AppError && /Kafka host/.test(e.message) && /Kafka port/.test(e.message) &&
      /PostgreSQL URI/.test(e.message),
  );
});

Deno.test("isValidHost() accepts names and addresses, refuses junk", () => {
  for (const ok of ["localhost", "127.0.0.1", "kafka-abc.aivencloud.com", "::1"]) {
    assert.ok(isValidHost(ok), ok);
  }
  for (const bad of ["", "a b", "300.1.1.1", "-x.com", "host;rm", "a..b"]) {
    assert.ok(!isValidHost(bad), bad);
  }
});

Deno.test("parsePostgresUri() defaults remote hosts to TLS and refuses other schemes", () => {
  assert.equal(parsePostgresUri("postgres://u:p@db.example.com/x").sslmode, "require");
  assert.equal(parsePostgresUri("postgres://u:p@127.0.0.1/x").sslmode, "prefer");
  assert.throws(() => parsePostgresUri("mysql://u:p@h/x"), /scheme/);
  assert.throws(() => parsePostgresUri("postgres://u:p@h/x?sslmode=bogus"), /sslmode/);
});

Deno.test("tlsOptions() always verifies; skips the host name only with a CA below verify-full", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(join(dir, "ca.pem"), "CA");
  const require = tlsOptions(parsePostgresUri("postgres://u@h/x?sslmode=require"), dir);
  assert.ok(
    require && require.rejectUnauthorized === true && require.ca === "CA" &&
      require.checkServerIdentity,
  );
  const full = tlsOptions(parsePostgresUri("postgres://u@h/x?sslmode=verify-full"), dir);
  assert.ok(full && full.rejectUnauthorized === true && full.checkServerIdentity === undefined);
  const noCa = tlsOptions(parsePostgresUri("postgres://u@h/x?sslmode=require"));
  assert.ok(noCa && noCa.rejectUnauthorized === true && noCa.checkServerIdentity === undefined);
  assert.equal(tlsOptions(parsePostgresUri("postgres://u@h/x?sslmode=disable")), false);
  assert.throws(() => tlsOptions(parsePostgresUri("postgres://u@h/x?sslmode=verify-ca")), AppError);
});
