import assert from "node:assert/strict";
import { redact, registerSecret } from "./log.ts";

Deno.test("redact() hides the password of a URI", () => {
  const text = redact(
    "cannot connect to postgres://avnadmin:s3cr3t-pw@pg.example.com:5432/defaultdb",
  );
  assert.ok(!text.includes("s3cr3t-pw"));
  assert.ok(text.includes("postgres://avnadmin:***@pg.example.com"));
});

Deno.test("redact() hides private keys and registered secrets", () => {
  registerSecret("canary-9f2d-password");
  const key = "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----";
  const text = redact(`key ${key} and canary-9f2d-password and password=hunter22`);
  assert.ok(!text.includes("MIIEv"));
  assert.ok(!text.includes("canary-9f2d-password"));
  assert.ok(!text.includes("hunter22"));
});
