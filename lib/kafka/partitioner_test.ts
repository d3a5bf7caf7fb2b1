import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import type { PartitionMetadata } from "kafkajs";
import { createKeyPartitioner, murmur2 } from "./partitioner.ts";

const require = createRequire(import.meta.url);
const kafkaJs = require("kafkajs/src/producer/partitioners/index.js") as {
  DefaultPartitioner: typeof createKeyPartitioner;
};
const kafkaJsMurmur2 = require("kafkajs/src/producer/partitioners/default/murmur2.js") as (
  key: unknown,
) => number;

function keys(): unknown[] {
  const out: unknown[] = ["", "a", "ab", "abc", "abcd", "abcde", crypto.randomUUID(), "é", "😀x"];
  out.push("\ud800", "a\udfffb", "\u0000\u007f\u0080", 0, 12345, -1, 1.5, true, { a: 1 });
  out.push(Buffer.from([]), Buffer.from([0xff, 0x80, 0, 1, 2]), new Uint8Array([1, 2, 3]));
  for (let i = 0; i < 3000; i++) {
    const length = Math.floor(Math.random() * 70);
    const codes = Array.from(
      { length },
      () => i % 3 === 0 ? Math.floor(Math.random() * 0x10000) : 32 + Math.floor(Math.random() * 95),
    );
    out.push(String.fromCharCode(...codes));
    if (i % 5 === 0) out.push(Buffer.from(codes.map((c) => c & 0xff)));
  }
  return out;
}

Deno.test("murmur2 equals KafkaJS's for strings, Buffers and other keys", () => {
  for (const key of keys()) assert.equal(murmur2(key), kafkaJsMurmur2(key), `key ${String(key)}`);
  assert.equal(murmur2("21"), -973932308); // Java's Utils.murmur2("21".getBytes())
});

const metadata = (leaders: number[]): PartitionMetadata[] =>
  leaders.map((leader, partitionId) => ({
    partitionId,
    leader,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));

Deno.test("the partitioner picks KafkaJS's default partition for every key and a given partition", () => {
  const ours = createKeyPartitioner(), theirs = kafkaJs.DefaultPartitioner();
  for (const count of [1, 3, 6, 7]) {
    const partitionMetadata = metadata(Array(count).fill(0));
    for (const key of keys()) {
      const message = { key: key as string, value: "v" };
      const args = { topic: "t", partitionMetadata, message };
      assert.equal(ours(args), theirs(args), `key ${String(key)}, ${count} partitions`);
    }
    const fixed = {
      topic: "t",
      partitionMetadata,
      message: { key: "k", value: "v", partition: 5 },
    };
    assert.equal(ours(fixed), 5);
  }
});

Deno.test("without a key the partitioner goes round the partitions that have a leader", () => {
  const partition = createKeyPartitioner();
  const partitionMetadata = metadata([0, -1, 0, 0, -1]);
  const seen = Array.from(
    { length: 8 },
    () => partition({ topic: "t", partitionMetadata, message: { key: null, value: "v" } }),
  );
  assert.deepEqual(new Set(seen), new Set([0, 2, 3]));
  for (let i = 3; i < seen.length; i++) assert.equal(seen[i], seen[i - 3]);
  const none = metadata([-1, -1]);
  const p = partition({ topic: "u", partitionMetadata: none, message: { key: null, value: "v" } });
  assert.ok(p === 0 || p === 1);
});
