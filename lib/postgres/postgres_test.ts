import assert from "node:assert/strict";
import { join } from "node:path";
import { AppError } from "../errors.ts";
import { createPool, storedApplicationName } from "./postgres.ts";
import { parsePostgresUri } from "../config/postgres_uri.ts";
import { ROOT, sh, stackInfo } from "../../testing/testing.ts";

Deno.test("createPool() talks TLS to PostgreSQL, verifying the server with the CA (verify-full)", async () => {
  const info = stackInfo();
  const url = new URL(info.postgresUri);
  url.searchParams.set("sslmode", "verify-full");
  url.searchParams.set("sslrootcert", join(info.certPath, "ca.pem"));
  const db = await createPool({ uri: url.toString() });
  try {
    const { rows } = await db.pool.query(
      "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert.equal(rows[0]?.ssl, true);
  } finally {
    await db.pool.end();
  }
});

Deno.test("storedApplicationName() is the session name PostgreSQL shows, long and multi-byte names cut as it cuts them", async () => {
  const info = stackInfo();
  const names = [
    "tickets-consumer tickets-sink-public-movie_ticket",
    `tickets-consumer tickets-sink-public-${"t".repeat(60)}`,
    // 2-, 3- and 4-byte characters straddling byte 63
    `${"x".repeat(62)}é and more`,
    `${"x".repeat(61)}€€`,
    `${"x".repeat(60)}🎟️ ticket`,
  ];
  for (const name of names) {
    const db = await createPool({
      uri: info.postgresUri,
      certPath: info.certPath,
      max: 1,
      applicationName: name,
    });
    try {
      const { rows } = await db.pool.query<{ name: string }>(
        "SELECT application_name AS name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
      );
      assert.equal(storedApplicationName(name), rows[0]!.name, name);
    } finally {
      await db.pool.end();
    }
  }
  assert.equal(storedApplicationName(names[0]!), names[0]);
});

Deno.test("createPool() accepts an Aiven URI with sslmode=require when the CA is given", async () => {
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath });
  await db.pool.end();
  assert.match(info.postgresUri, /sslmode=require/);
});

Deno.test("createPool() refuses a server its CA did not sign, and a wrong password, in one line", async () => {
  const info = stackInfo();
  const dir = await Deno.makeTempDir();
  await sh(
    `openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out ca.pem -days 2 -subj /CN=other 2>/dev/null`,
    dir,
  );
  await assert.rejects(
    createPool({ uri: info.postgresUri, certPath: dir, connectTimeoutMs: 5_000 }),
    (e) => e instanceof AppError && e.code === "DB_TLS" && !e.message.includes("\n"),
  );
  const url = new URL(info.postgresUri);
  const real = url.password;
  url.password = "canary-wrong-password-7731";
  await assert.rejects(
    createPool({ uri: url.toString(), certPath: info.certPath, connectTimeoutMs: 5_000 }),
    (e) =>
      e instanceof AppError && e.code === "DB_AUTH" && !e.message.includes("canary-wrong") &&
      !e.message.includes(real),
  );
});

/** The stack's URI with `host` and these query parameters (sslmode left out when undefined). */
function stackUri(params: Record<string, string | undefined>, host?: string): string {
  const url = new URL(stackInfo().postgresUri);
  if (host) url.hostname = host;
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined) url.searchParams.delete(name);
    else url.searchParams.set(name, value);
  }
  return url.toString();
}

Deno.test("createPool() with sslrootcert=system trusts only the system's CAs, never the cert folder's ca.pem", async () => {
  const info = stackInfo();
  // the stack's CA is private: it verifies the server (first case) but is in no system store
  await createPool({ uri: stackUri({ sslmode: "verify-full" }), certPath: info.certPath })
    .then((db) => db.pool.end());
  for (const sslmode of ["verify-full", undefined]) {
    await assert.rejects(
      createPool({
        uri: stackUri({ sslmode, sslrootcert: "system" }),
        certPath: info.certPath,
        connectTimeoutMs: 5_000,
      }),
      (e) =>
        e instanceof AppError && e.code === "DB_TLS" && !e.message.includes("\n") &&
        /not trusted .*sslrootcert=system trusts only the system's CAs/.test(e.message),
    );
  }
});

Deno.test("createPool() refuses sslrootcert=system with a weaker sslmode, as libpq does", async () => {
  assert.equal(
    parsePostgresUri("postgres://u@db.example.com/x?sslrootcert=system").sslmode,
    "verify-full",
  );
  assert.equal(
    parsePostgresUri("postgres://u@127.0.0.1/x?sslrootcert=system").sslmode,
    "verify-full",
  );
  for (const sslmode of ["disable", "allow", "prefer", "require", "verify-ca"]) {
    await assert.rejects(
      createPool({ uri: stackUri({ sslmode, sslrootcert: "system" }), connectTimeoutMs: 5_000 }),
      (e) =>
        e instanceof AppError && e.code === "BAD_INPUT" &&
        e.message.includes(`sslmode=${sslmode}, which may not be used with sslrootcert=system`) &&
        e.message.includes("verify-full"),
    );
  }
});

Deno.test("createPool() checks the host name under verify-full, and skips it under require with a CA", async () => {
  const info = stackInfo();
  const ca = join(info.certPath, "ca.pem");
  // 127.1 reaches the server (127.0.0.1) by a name its certificate does not list
  await assert.rejects(
    createPool({ uri: stackUri({ sslmode: "verify-full", sslrootcert: ca }, "127.1") }),
    (e) =>
      e instanceof AppError && e.code === "DB_TLS" && !e.message.includes("\n") &&
      e.message.includes('certificate is not for host "127.1"'),
  );
  const db = await createPool({ uri: stackUri({ sslmode: "require", sslrootcert: ca }, "127.1") });
  await db.pool.end();
});

Deno.test("createPool() with sslrootcert=system connects when the system trusts the CA, and checks the host name", async () => {
  const info = stackInfo();
  // a system trust store holding only the stack's CA: SSL_CERT_FILE, as OpenSSL and libpq read it
  const dir = await Deno.makeTempDir();
  const store = join(dir, "trusted.pem");
  await Deno.copyFile(join(info.certPath, "ca.pem"), store);
  const script = `
    import { createPool } from "./lib/postgres/postgres.ts";
    for (const host of ["localhost", "127.0.0.1", "127.1"]) {
      const url = new URL(Deno.env.get("TEST_URI"));
      url.hostname = host;
      try {
        const db = await createPool({ uri: url.toString(), connectTimeoutMs: 5000 });
        const { rows } = await db.pool.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
        await db.pool.end();
        console.log(host, "ssl=" + rows[0].ssl);
      } catch (error) {
        console.log(host, error.code, error.message);
      }
    }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", join(ROOT, "deno.json"), script],
    cwd: ROOT,
    env: {
      SSL_CERT_FILE: store,
      TEST_URI: stackUri({ sslmode: undefined, sslrootcert: "system" }),
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const lines = stdout.trim().split("\n");
  assert.equal(lines[0], "localhost ssl=true");
  assert.equal(lines[1], "127.0.0.1 ssl=true");
  assert.match(lines[2]!, /^127\.1 DB_TLS PostgreSQL server certificate is not for host "127\.1"/);
  assert.equal(lines.length, 3, stdout);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("classifyDbError() sorts by what a retry can do: data, schema or transient", async () => {
  const { classifyDbError, sqlStateOf } = await import("./postgres.ts");
  const { AppError } = await import("../errors.ts");
  const kinds = (codes: string[]) => codes.map((code) => classifyDbError({ code }));
  assert.deepEqual(kinds(["22008", "22021", "23514", "54000"]), ["data", "data", "data", "data"]);
  assert.deepEqual(kinds(["42P01", "42501"]), ["schema", "schema"]);
  assert.deepEqual(
    kinds(["08006", "28P01", "40P01", "53300", "55P03", "57P01", "ECONNRESET"]),
    Array(7).fill("transient"),
  );
  assert.equal(sqlStateOf({ code: "ECONNRESET" }), undefined);
  assert.equal(sqlStateOf({ code: "57P01" }), "57P01");
  // an AppError keeps what it wraps
  const gaveUp = new AppError("DB_UNREACHABLE", "x", { sqlState: "57P01", retriable: true });
  assert.deepEqual([classifyDbError(gaveUp), gaveUp.retriable, gaveUp.sqlState], [
    "transient",
    true,
    "57P01",
  ]);
  assert.equal(classifyDbError(new AppError("DB", "no table", { sqlState: "42P01" })), "schema");
  assert.equal(classifyDbError(new AppError("DB", "bad setting")), "schema");
});
