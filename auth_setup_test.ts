import assert from "node:assert/strict";
import { join } from "node:path";
import { readCreds } from "./lib/config/creds.ts";
import { runScript, sh, stackInfo } from "./testing/testing.ts";

/** A copy of the stack's client cert folder in a temp dir, to break on purpose. */
async function certCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tickets-certs-" });
  for (const f of ["ca.pem", "service.cert", "service.key"]) {
    await Deno.copyFile(join(stackInfo().certPath, f), join(dir, f));
  }
  await Deno.chmod(join(dir, "service.key"), 0o600);
  return dir;
}

function baseArgs(
  certPath: string,
  creds: string,
  port = stackInfo().kafka.ssl.split(":")[1]!,
): string[] {
  return [
    "--kafka-hostname",
    "127.0.0.1",
    "--kafka-portnumber",
    port,
    "--cert-path",
    certPath,
    "--postgres-uri",
    stackInfo().postgresUri,
    "--creds",
    creds,
  ];
}

Deno.test("auth_setup writes a 0600 creds file that --check confirms over SSL", async () => {
  const dir = await Deno.makeTempDir();
  const creds = join(dir, "creds.json");
  const write = await runScript("auth_setup.ts", baseArgs(stackInfo().certPath, creds));
  assert.equal(write.code, 0, write.stderr);
  assert.equal((await Deno.stat(creds)).mode! & 0o777, 0o600);
  assert.equal(readCreds(creds)?.kafka.securityProtocol, "SSL");
  const check = await runScript("auth_setup.ts", ["--check", "--creds", creds]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /^kafka: ok/m);
  assert.match(check.stdout, /^postgres: ok .*TLS/m);
  const password = new URL(stackInfo().postgresUri).password;
  assert.ok(!(write.stdout + write.stderr + check.stdout + check.stderr).includes(password));
});

Deno.test("auth_setup refuses bad input, reports all problems, writes nothing", async (t) => {
  const dir = await Deno.makeTempDir();
  const creds = join(dir, "creds.json");
  await t.step("bad port and bad URI scheme together", async () => {
    const args = baseArgs(stackInfo().certPath, creds, "70000");
    args[args.indexOf("--postgres-uri") + 1] = "mysql://x@y/z";
    const r = await runScript("auth_setup.ts", args);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: .*port number from 1 to 65535.*scheme must be postgres/);
  });
  await t.step("missing cert file", async () => {
    const certs = await certCopy();
    await Deno.remove(join(certs, "service.key"));
    const r = await runScript("auth_setup.ts", baseArgs(certs, creds));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /has no readable service\.key/);
  });
  await t.step("certificate and key that do not match", async () => {
    const certs = await certCopy();
    await sh(`openssl genrsa -out ${join(certs, "service.key")} 2048 2>/dev/null`);
    const r = await runScript("auth_setup.ts", baseArgs(certs, creds));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /service\.key does not match service\.cert/);
  });
  await assert.rejects(Deno.stat(creds), Deno.errors.NotFound);
});

async function timedCheck(args: string[]) {
  const started = performance.now();
  const r = await runScript("auth_setup.ts", ["--check", ...args]);
  return { ...r, seconds: (performance.now() - started) / 1000 };
}

Deno.test("auth_setup --check fails cleanly with a wrong CA, a foreign client cert, a closed port", async (t) => {
  const dir = await Deno.makeTempDir();
  await t.step("wrong CA", async () => {
    const certs = await certCopy();
    // a fresh CA that signed neither the broker nor the client certificate
    await sh(
      `openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out other.pem -days 2 -subj /CN=other-ca 2>/dev/null`,
      certs,
    );
    // re-sign the client with it so the folder is self-consistent but the broker is not trusted
    await sh(
      `openssl req -new -key service.key -subj /CN=x -out c.csr 2>/dev/null && openssl x509 -req -in c.csr -CA other.pem -CAkey ca.key -CAcreateserial -out service.cert -days 2 2>/dev/null && cp other.pem ca.pem`,
      certs,
    );
    const creds = join(dir, "wrong-ca.json");
    assert.equal((await runScript("auth_setup.ts", baseArgs(certs, creds))).code, 0);
    const r = await timedCheck(["--creds", creds, "--connect-timeout", "5"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^kafka: FAILED: .*(not trusted|certificate)/m);
    assert.match(r.stdout, /^postgres: FAILED: .*not trusted/m);
    assert.ok(r.seconds < 15, `took ${r.seconds} s`);
  });
  await t.step("a client certificate the broker's CA did not sign", async () => {
    const certs = await certCopy();
    await sh(
      `openssl req -x509 -newkey rsa:2048 -nodes -keyout service.key -out service.cert -days 2 -subj /CN=intruder 2>/dev/null`,
      certs,
    );
    const r = await timedCheck([
      ...baseArgs(certs, join(dir, "none.json")).filter((a) =>
        a !== "--creds" && !a.endsWith("none.json")
      ),
    ]);
    // refused before connecting: the folder's certificate is not signed by its CA
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^kafka: FAILED: .*was not signed by ca\.pem/m);
    assert.ok(r.seconds < 15, `took ${r.seconds} s`);
  });
  await t.step("closed port", async () => {
    const creds = join(dir, "closed.json");
    assert.equal(
      (await runScript("auth_setup.ts", baseArgs(stackInfo().certPath, creds, "1"))).code,
      0,
    );
    const r = await timedCheck(["--creds", creds, "--connect-timeout", "5"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^kafka: FAILED: .*connection refused/m);
    assert.ok(r.seconds < 15, `took ${r.seconds} s`);
  });
});
