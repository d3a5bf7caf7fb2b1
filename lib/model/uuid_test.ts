import assert from "node:assert/strict";
import { uuidv7s } from "./uuid.ts";

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test("uuidv7s() makes distinct version-7 ids carrying the time, in its first 48 bits", () => {
  const now = Date.UTC(2026, 10, 25, 12, 34, 56, 789);
  const ids = uuidv7s(10_000, now);
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, V7);
  assert.equal(parseInt(ids[0]!.replace("-", "").slice(0, 12), 16), now);
  assert.deepEqual(uuidv7s(0), []);
});

Deno.test("uuidv7s() ids of a later millisecond sort after earlier ones", () => {
  const [a] = uuidv7s(1, 1_700_000_000_000);
  const [b] = uuidv7s(1, 1_700_000_000_001);
  assert.ok(a! < b!);
});
