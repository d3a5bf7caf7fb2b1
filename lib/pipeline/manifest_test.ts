import assert from "node:assert/strict";
import { type ManifestEntry, ManifestWriter, readManifest } from "./manifest.ts";
import { type ManifestRow, problemOf } from "./manifest_check.ts";

const header = { manifest: "tickets", version: 1, cancelRate: 0.1, poisonRate: 0.2 } as const;

Deno.test("a manifest reads back as written, in chunks", async () => {
  const path = `${await Deno.makeTempDir()}/m.jsonl`;
  const writer = new ManifestWriter(path, header);
  const written: ManifestEntry[] = [];
  for (let i = 0; i < 12_345; i++) {
    const e: ManifestEntry = i % 3
      ? {
        topic: "t",
        partition: i % 4,
        offset: i,
        key: `k${i}`,
        kind: "purchase",
        expect: "stored",
      }
      : {
        topic: "t",
        partition: 0,
        offset: i,
        key: null,
        kind: "wrong-key",
        expect: "dead_letter",
        reason: "BAD_KEY",
      };
    writer.add(e);
    written.push(e);
  }
  writer.close();
  const read: ManifestEntry[] = [];
  const manifest = readManifest(path, 1000);
  let next = await manifest.next();
  for (; !next.done; next = await manifest.next()) {
    assert.ok(next.value.length <= 2000);
    read.push(...next.value);
  }
  assert.deepEqual(next.value, header);
  assert.deepEqual(read, written);
});

Deno.test("a broken manifest is refused naming the line", async () => {
  const dir = await Deno.makeTempDir();
  const read = async (text: string) => {
    await Deno.writeTextFile(`${dir}/m`, text);
    for await (const _ of readManifest(`${dir}/m`)) { /* drain */ }
  };
  const first = JSON.stringify(header) + "\n";
  await assert.rejects(read("{}\n"), /not a producer manifest/);
  await assert.rejects(read(first + "{oops\n"), /line 2: not JSON/);
  await assert.rejects(
    read(first + '{"topic":"t","partition":0,"offset":1,"key":"k","kind":"x","expect":"lost"}\n'),
    /line 2: expect is not one of/,
  );
  await assert.rejects(
    read(
      first + '{"topic":"t","partition":0,"offset":1,"key":"k","kind":"x","expect":"dead_letter"}',
    ),
    /line 2: a dead letter without a reason/,
  );
  await assert.rejects(read(""), /is empty/);
});

Deno.test("problemOf names what differs from the manifest", () => {
  const stored: ManifestEntry = {
    topic: "t",
    partition: 1,
    offset: 10,
    key: "a",
    kind: "purchase",
    expect: "stored",
  };
  const cancelled: ManifestEntry = { ...stored, kind: "cancel", expect: "cancelled" };
  const dead: ManifestEntry = { ...stored, kind: "bad-json", expect: "dead_letter", reason: "X" };
  const row: ManifestRow = {
    ticket_id: "a",
    status: "purchased",
    kafka_topic: "t",
    kafka_partition: 1,
    kafka_offset: "10",
    paid: "PAID",
    holds_seats: true,
  };
  const refunded = { ...row, status: "cancelled", paid: "REFUNDED", holds_seats: false };
  assert.equal(problemOf(stored, row, undefined), undefined);
  assert.equal(problemOf(stored, { ...row, kafka_offset: "7" }, undefined), undefined);
  assert.equal(problemOf(stored, { ...row, kafka_offset: "11" }, undefined), "stored from t/1@11");
  assert.equal(problemOf(stored, undefined, undefined), "not in the table");
  assert.equal(problemOf(stored, row, "BAD_KEY"), "a dead letter BAD_KEY at that offset");
  assert.equal(problemOf(stored, refunded, undefined), "status cancelled");
  assert.equal(
    problemOf(stored, { ...row, holds_seats: false }, undefined),
    "stored but holds no seat",
  );
  assert.equal(problemOf(cancelled, refunded, undefined), undefined);
  assert.equal(problemOf(cancelled, row, undefined), "status purchased");
  assert.equal(
    problemOf(cancelled, { ...refunded, holds_seats: true }, undefined),
    "cancelled but still holds its seats",
  );
  assert.equal(
    problemOf(cancelled, { ...refunded, paid: "PAID" }, undefined),
    "payment PAID, not REFUNDED",
  );
  assert.equal(problemOf(dead, undefined, "X"), undefined);
  assert.equal(problemOf(dead, undefined, "Y"), "dead letter Y");
  assert.equal(problemOf(dead, undefined, undefined), "no dead letter at that offset");
});
