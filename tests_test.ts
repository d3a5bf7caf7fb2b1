import assert from "node:assert/strict";
import { runScript, writeStackCreds } from "./testing/testing.ts";

Deno.test("tests.ts 6 runs all entries non-interactively against the stack and passes", async () => {
  const creds = await writeStackCreds();
  const r = await runScript("tests.ts", ["6", "--creds", creds]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (let n = 1; n <= 5; n++) assert.match(r.stdout, new RegExp(`^PASS ${n}\\. `, "m"));
  assert.doesNotMatch(r.stdout, /^FAIL/m);
});

Deno.test("tests.ts refuses an entry that is not on the menu", async () => {
  const r = await runScript("tests.ts", ["9", "--creds", await writeStackCreds()]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /not on the menu/);
});

Deno.test("tests.ts 7 exits at once with success", async () => {
  const r = await runScript("tests.ts", ["7", "--creds", await writeStackCreds()]);
  assert.equal(r.code, 0, r.stderr);
});
