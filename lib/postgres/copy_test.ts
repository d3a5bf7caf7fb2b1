import assert from "node:assert/strict";
import { copyField, copyFrom, copyLine } from "./copy.ts";
import { createPool } from "./postgres.ts";
import { stackInfo } from "../../testing/testing.ts";

Deno.test("copyField() escapes what COPY's text format treats specially, and NULL as \\N", () => {
  assert.equal(copyField("plain text, with ; and 'quotes'"), "plain text, with ; and 'quotes'");
  assert.equal(copyField("a\tb\nc\rd\\e"), "a\\tb\\nc\\rd\\\\e");
  assert.equal(copyField("\\N"), "\\\\N");
  assert.equal(copyField(null), "\\N");
  assert.equal(copyField(undefined), "\\N");
  assert.equal(copyField(12.5), "12.5");
  assert.equal(copyLine(["x", null, 3]), "x\t\\N\t3\n");
});

Deno.test("copyFrom() stores awkward text exactly, reports the row count, and a unique violation leaves the connection usable", async () => {
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 1 });
  const client = await db.pool.connect();
  const awkward = ["tab\there", "new\nline", "cr\rhere", "back\\slash", "\\N", "naïve 🎬", ""];
  try {
    await client.query("CREATE TEMP TABLE copy_probe (id int PRIMARY KEY, v text)");
    const lines = awkward.map((v, i) => copyLine([i, v])).join("") + copyLine([99, null]);
    assert.equal(await copyFrom(client, "copy_probe (id, v)", lines), awkward.length + 1);
    const { rows } = await client.query("SELECT id, v FROM copy_probe ORDER BY id");
    assert.deepEqual(rows.map((r) => r.v), [...awkward, null]);
    await assert.rejects(copyFrom(client, "copy_probe (id, v)", copyLine([0, "again"])), {
      code: "23505",
    });
    assert.equal((await client.query("SELECT count(*)::int AS n FROM copy_probe")).rows[0].n, 8);
  } finally {
    client.release();
    await db.pool.end();
  }
});
