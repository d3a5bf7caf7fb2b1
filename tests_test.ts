import assert from "node:assert/strict";
import { runScript, writeStackCreds } from "./testing/testing.ts";

Deno.test("tests.ts 6 runs all entries non-interactively against the stack and passes, counting the cancellations in each check", async () => {
  const creds = await writeStackCreds();
  const r = await runScript("tests.ts", ["6", "--num", "50", "--creds", creds]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (let n = 1; n <= 5; n++) assert.match(r.stdout, new RegExp(`^PASS ${n}\\. `, "m"));
  assert.doesNotMatch(r.stdout, /^FAIL/m);
  // the default --cancel-rate 0.2: the same cancellations published, applied and checked
  const sent = Number(
    /^PASS 1\. .*: 50 tickets and (\d+) cancellations published/m.exec(r.stdout)?.[1],
  );
  assert.ok(sent > 0, r.stdout);
  assert.match(
    r.stdout,
    new RegExp(
      `^PASS 4\\. .*applied ${sent} cancellations; table has 50 .*, ${sent} of them cancelled$`,
      "m",
    ),
  );
  assert.match(
    r.stdout,
    new RegExp(
      `^PASS 5\\. .*all 50 tickets stored with every field equal, ${sent} cancelled \\(`,
      "m",
    ),
  );
});

Deno.test("tests.ts 6 --cancel-rate 0 publishes purchases only", async () => {
  const r = await runScript("tests.ts", [
    "6",
    "--cancel-rate",
    "0",
    "--creds",
    await writeStackCreds(),
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^PASS 1\. .*: 10 tickets and 0 cancellations published/m);
  assert.match(r.stdout, /^PASS 5\. .*, 0 cancelled \(/m);
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
