import assert from "node:assert/strict";
import { join } from "node:path";
import { AppError } from "./errors.ts";
import { createPool } from "./postgres.ts";
import { sh, stackInfo } from "./testing.ts";

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
