import assert from "node:assert/strict";
import fc from "fast-check";
import { copyField, copyFrom, copyLine, copyQuery, CopyWriter } from "./copy.ts";
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

Deno.test("CopyWriter writes exactly the UTF-8 of copyLine's lines, for any text (property)", () => {
  const decoder = new TextDecoder();
  fc.assert(
    fc.property(
      fc.array(
        fc.array(fc.option(fc.string({ unit: "binary", maxLength: 40 })), {
          minLength: 1,
          maxLength: 5,
        }),
        { maxLength: 20 },
      ),
      (rows) => {
        const out = new CopyWriter(8); // grows as it goes
        for (const row of rows) {
          row.forEach((v, i) => {
            const last = i === row.length - 1;
            if (v === null) out.nullField(last);
            else if (last) out.last(v);
            else out.field(v);
          });
        }
        const expected = new TextEncoder().encode(rows.map((r) => copyLine(r)).join(""));
        assert.deepEqual(new Uint8Array(out.bytes()), expected, decoder.decode(expected));
        assert.equal(out.rows, rows.length);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("copyFrom() streams pieces as they are made, stops asking after a refusal, and a piece that cannot be made fails the COPY", async () => {
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 1 });
  const client = await db.pool.connect();
  const encoder = new TextEncoder();
  try {
    await client.query("CREATE TEMP TABLE copy_stream (id int PRIMARY KEY, v text)");
    const asked: number[] = [];
    const pieces = function* (ids: number[][]) {
      for (const [k, piece] of ids.entries()) {
        asked.push(k);
        yield encoder.encode(piece.map((id) => copyLine([id, `v${id}`])).join(""));
        yield new Uint8Array(0); // nothing: the loop turns
      }
    };
    assert.equal(await copyFrom(client, "copy_stream (id, v)", pieces([[1, 2], [3], [4, 5]])), 5);
    assert.deepEqual(asked, [0, 1, 2]);
    // the second of 200 pieces of 2,000 rows repeats id 1: once the server has refused it, no
    // more pieces are made (it reports the violation when it inserts that piece's rows)
    asked.length = 0;
    const many = Array.from(
      { length: 200 },
      (_, k) =>
        Array.from({ length: 2000 }, (_, i) => k === 1 && i === 1000 ? 1 : 100 + k * 2000 + i),
    );
    await client.query("BEGIN");
    await assert.rejects(copyFrom(client, "copy_stream (id, v)", pieces(many)), { code: "23505" });
    await client.query("ROLLBACK");
    await new Promise((resolve) => setTimeout(resolve, 1000)); // a sender still going would finish
    assert.ok(asked.length < 200, `asked for all ${asked.length} pieces despite the refusal`);
    const failing = function* () {
      yield encoder.encode(copyLine([10, "x"]));
      throw new Error("no more tickets");
    };
    await assert.rejects(copyFrom(client, "copy_stream (id, v)", failing()), (error: Error) => {
      assert.match(error.message, /could not make the COPY data: no more tickets/);
      return true;
    });
    const { rows } = await client.query("SELECT array_agg(id ORDER BY id) AS ids FROM copy_stream");
    assert.deepEqual(rows[0].ids, [1, 2, 3, 4, 5]);
  } finally {
    client.release();
    await db.pool.end();
  }
});

Deno.test("copyQuery() runs a transaction of several COPYs as one Query with their data sent ahead; an error before or between them stores nothing and the next Query finds the connection idle", async () => {
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 1 });
  const client = await db.pool.connect();
  const lines = (ids: number[]) => ids.map((id) => copyLine([id, `v${id}`])).join("");
  const count = async () =>
    (await client.query(
      "SELECT (SELECT count(*) FROM qa)::int + (SELECT count(*) FROM qb)::int AS n",
    ))
      .rows[0].n;
  try {
    await client.query("CREATE TEMP TABLE qa (id int PRIMARY KEY, v text)");
    await client.query("CREATE TEMP TABLE qb (id int PRIMARY KEY, v text)");
    const both = "COPY qa (id, v) FROM STDIN; COPY qb (id, v) FROM STDIN;";
    assert.deepEqual(
      await copyQuery(client, `BEGIN; ${both} COMMIT;`, [lines([1, 2]), lines([1, 2, 3])]),
      [2, 3],
    );
    // a statement before the COPYs raises: the rest of the Query is skipped and the data sent
    // behind it is ignored, with 40,000 rows of it in flight
    const many = Array.from({ length: 20_000 }, (_, i) => i + 10);
    await assert.rejects(
      copyQuery(
        client,
        `BEGIN; DO 'BEGIN RAISE EXCEPTION ''fenced'' USING ERRCODE = ''TK001''; END'; ${both} COMMIT;`,
        [lines(many), lines(many)],
      ),
      { code: "TK001" },
    );
    await client.query("ROLLBACK");
    assert.equal(await count(), 5);
    // the second COPY meets a stored key: the first one's rows go with the transaction
    await assert.rejects(
      copyQuery(client, `BEGIN; ${both} COMMIT;`, [lines(many), lines([3])]),
      { code: "23505" },
    );
    await client.query("ROLLBACK");
    assert.equal(await count(), 5);
    // and the connection is idle, in no transaction, for the next statement
    const { rows } = await client.query("SELECT now() = statement_timestamp() AS outside");
    assert.equal(rows[0].outside, true);
  } finally {
    client.release();
    await db.pool.end();
  }
});
