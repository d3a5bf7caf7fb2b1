import assert from "node:assert/strict";
import { join } from "node:path";
import { certFolderWithValidity, runScript, sh, stackInfo } from "../testing/testing.ts";

function args(certPath: string): string[] {
  const [host, port] = stackInfo().kafka.ssl.split(":");
  return [
    "--check",
    "--kafka-hostname",
    host!,
    "--kafka-portnumber",
    port!,
    "--cert-path",
    certPath,
    "--postgres-uri",
    stackInfo().postgresUri,
    "--creds",
    "/nonexistent",
    "--connect-timeout",
    "5",
  ];
}

const stamp = (d: Date) => d.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";

Deno.test("auth_setup --check (doctor) flags an expired certificate", async () => {
  const dir = await certFolderWithValidity("20200101000000Z", "20200201000000Z");
  const r = await runScript("auth_setup.ts", args(dir));
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^certificate: FAILED: .*service\.cert expired on 2020-02-01/m);
});

Deno.test("auth_setup --check (doctor) warns of a certificate that expires within 30 days, and still connects", async () => {
  const now = new Date();
  const dir = await certFolderWithValidity(
    stamp(new Date(now.getTime() - 86_400_000)),
    stamp(new Date(now.getTime() + 10 * 86_400_000)),
  );
  const r = await runScript("auth_setup.ts", args(dir));
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^certificate: warning: expires in (9|10) days/m);
  assert.match(r.stdout, /^kafka: ok/m);
});

Deno.test("auth_setup --check (doctor) flags a CA that did not sign the certificate, and a world-readable key", async () => {
  const dir = await Deno.makeTempDir();
  for (const f of ["service.cert", "service.key"]) {
    await Deno.copyFile(join(stackInfo().certPath, f), join(dir, f));
  }
  await sh(
    `openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out ca.pem -days 5 -subj /CN=other-ca 2>/dev/null`,
    dir,
  );
  await Deno.chmod(join(dir, "service.key"), 0o644);
  const r = await runScript("auth_setup.ts", args(dir));
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^certificate: FAILED: service\.cert in .* was not signed by ca\.pem/m);
  assert.match(
    r.stdout,
    /^certificate: FAILED: .*service\.key is readable by group or others; fix it with: chmod 600/m,
  );
  assert.match(r.stdout, /^kafka: FAILED/m);
});
