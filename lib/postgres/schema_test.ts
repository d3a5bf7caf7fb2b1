import assert from "node:assert/strict";
import { AppError } from "../errors.ts";
import fc from "fast-check";
import { checkIdentifier, qualify, quoteLiteral, schemaStatements } from "./schema.ts";
import { createPool } from "./postgres.ts";
import { stackInfo } from "../../testing/testing.ts";

for (
  const bad of [
    "x; drop table y",
    '"quoted"',
    "a".repeat(100),
    "",
    "Tickets",
    "1abc",
    "tab le",
    "t-1",
  ]
) {
  Deno.test(`checkIdentifier() refuses ${JSON.stringify(bad.slice(0, 20))}`, () => {
    assert.throws(
      () => checkIdentifier("table name", bad),
      (e) => e instanceof AppError && e.code === "USAGE",
    );
    assert.throws(() => schemaStatements({ schema: "public", table: bad }), AppError);
    assert.throws(() => qualify({ schema: bad, table: "ok" }), AppError);
  });
}

Deno.test("qualify() quotes the schema and every table", () => {
  const q = qualify({ schema: "sales", table: "movie_ticket" });
  assert.equal(q.tickets, '"sales"."movie_ticket"');
  assert.equal(q.offsets, '"sales"."pipeline_offsets"');
  assert.equal(q.deadLetters, '"sales"."pipeline_dead_letters"');
});

Deno.test("schemaStatements() keeps the original columns and seats as text", () => {
  const ddl = schemaStatements({ schema: "public", table: "movie_ticket" }).join("\n");
  assert.match(ddl, /\bticket_id\s+text COLLATE "C" PRIMARY KEY/);
  for (const column of ["theater", "movie", "name", "email", "phone_number", "seats"]) {
    assert.match(ddl, new RegExp(`\\b${column}\\s+text NOT NULL`), column);
  }
  assert.match(ddl, /IF NOT EXISTS/);
});

Deno.test("quoteLiteral() gives back any text the server reads, whatever standard_conforming_strings says; a NUL is refused", async () => {
  assert.throws(() => quoteLiteral("a\0b"), AppError);
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 1 });
  const client = await db.pool.connect();
  try {
    const text = fc.string({ unit: "binary", maxLength: 40 }).filter((t) => !t.includes("\0"));
    const awkward = fc.stringMatching(/^[a-z'\\$ ]{0,12}$/);
    for (const conforming of ["on", "off"]) {
      await client.query(`SET standard_conforming_strings = ${conforming}`);
      await fc.assert(
        fc.asyncProperty(fc.oneof(text, awkward), async (value) => {
          const { rows } = await client.query(`SELECT ${quoteLiteral(value)} AS v`);
          assert.equal(rows[0].v, value);
        }),
        { numRuns: 300 },
      );
    }
  } finally {
    client.release();
    await db.pool.end();
  }
});
