import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import {
  encodeProduceRequest,
  installFastProduceRequests,
  isFastProduceRequest,
  kafkaJsProduceRequest,
  PRODUCE_VERSIONS,
  type ProduceMessage,
  type ProduceRequestArgs,
  produceRequestPath,
} from "./produce_encoder.ts";
import { crc32c } from "./crc32c.ts";
import { createKafka } from "./kafka.ts";
import { createKeyPartitioner } from "./partitioner.ts";
import { deleteTopics, stackConnection } from "../../testing/testing.ts";

const require = createRequire(import.meta.url);
const kafkaJsCrc32c = require("kafkajs/src/protocol/recordBatch/crc32C/index.js") as (
  b: Buffer,
) => number;
const Long = require("kafkajs/src/utils/long.js") as { fromValue(v: unknown): unknown };
const kafkaJsMurmur2 = require("kafkajs/src/producer/partitioners/default/murmur2.js") as (
  key: unknown,
) => number;

/** mulberry32: a small seeded PRNG, so a failure can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const PIECES = ["a", "Z", "0", "{", '"', "\\", "é", "€", "😀", "\ud800", "\udfff", "\n", "\u0000"];

/** Text of `length` units, ASCII with probability `ascii`, else any of PIECES. */
function text(random: () => number, length: number, ascii: number): string {
  let s = "";
  while (s.length < length) {
    s += random() < ascii
      ? String.fromCharCode(32 + Math.floor(random() * 95))
      : PIECES[Math.floor(random() * PIECES.length)];
  }
  return s;
}

/** A key or value of the kinds KafkaJS takes, with lengths around varint boundaries. */
function field(random: () => number): unknown {
  const lengths = [0, 1, 36, 63, 64, 65, 127, 128, 500, 1000, 8191, 8192, 8193];
  const length = lengths[Math.floor(random() * lengths.length)]!;
  const kind = random();
  if (kind < 0.1) return null;
  if (kind < 0.15) return undefined;
  if (kind < 0.3) return Buffer.from(text(random, length, 0.5));
  return text(random, length, [1, 1, 0.99, 0.5, 0][Math.floor(random() * 5)]!);
}

function message(random: () => number): ProduceMessage {
  const m: ProduceMessage = { key: field(random), value: field(random) };
  const r = random();
  if (r < 0.05) m.headers = { a: "1", b: ["x", Buffer.from("y")], "é": "€" };
  else if (r < 0.08) m.headers = {};
  else if (r < 0.1) m.value = 12345; // KafkaJS's own path decides (it throws)
  if (random() < 0.1) {
    m.timestamp = random() < 0.5
      ? 1_700_000_000_000 + Math.floor(random() * 1e6)
      : String(1_700_000_000_000 + Math.floor(random() * 1e6));
  }
  return m;
}

function request(random: () => number): ProduceRequestArgs {
  const topics = 1 + Math.floor(random() * 3);
  const args: ProduceRequestArgs = {
    acks: [-1, 0, 1][Math.floor(random() * 3)]!,
    timeout: 30_000,
    topicData: Array.from({ length: topics }, (_, t) => ({
      topic: t === 1 ? "tópico-ü" : `topic-${t}`,
      partitions: Array.from({ length: 1 + Math.floor(random() * 3) }, (_, p) => ({
        partition: p,
        messages: Array.from({ length: Math.floor(random() * 40) }, () => message(random)),
      })),
    })),
  };
  if (random() < 0.2) {
    args.transactionalId = "tx-1";
    args.producerId = Long.fromValue(4242);
    args.producerEpoch = 3;
    for (const t of args.topicData) t.partitions.forEach((p, i) => (p.firstSequence = 7 * i));
  }
  return args;
}

async function bytesOf(encode: () => Promise<{ buffer: Buffer }>): Promise<Buffer | string> {
  try {
    return Buffer.from((await encode()).buffer);
  } catch (error) {
    return `throws ${(error as Error).name}`;
  }
}

/** Runs `body` with Date.now frozen: both encoders stamp records without a timestamp. */
async function withFrozenClock(body: () => Promise<void>): Promise<void> {
  const now = Date.now;
  Date.now = () => 1_700_000_123_456;
  try {
    await body();
  } finally {
    Date.now = now;
  }
}

Deno.test("produce requests are encoded byte for byte as KafkaJS encodes them", async () => {
  const kafkaJs = kafkaJsProduceRequest(3);
  await withFrozenClock(async () => {
    for (let seed = 1; seed <= 120; seed++) {
      const args = request(prng(seed));
      const theirs = await bytesOf(() => kafkaJs(args).encode());
      const ours = await bytesOf(() => Promise.resolve(encodeProduceRequest(args)));
      assert.deepEqual(ours, theirs, `seed ${seed}`);
    }
  });
});

Deno.test("a request larger than its estimate (3-byte characters) grows its buffer", async () => {
  const args: ProduceRequestArgs = {
    acks: -1,
    timeout: 1000,
    topicData: [{
      topic: "t",
      partitions: [{ partition: 0, messages: [{ key: "k", value: "€".repeat(100_000) }] }],
    }],
  };
  await withFrozenClock(async () => {
    assert.deepEqual(
      Buffer.from(encodeProduceRequest(args).buffer),
      Buffer.from((await kafkaJsProduceRequest(3)(args).encode()).buffer),
    );
  });
});

Deno.test("CRC-32C equals KafkaJS's for every length and alignment", () => {
  const random = prng(99);
  const bytes = Buffer.from(Array.from({ length: 4096 }, () => Math.floor(random() * 256)));
  for (let length = 0; length < 200; length++) {
    for (const start of [0, 1, 3, 7]) {
      const slice = bytes.subarray(start, start + length);
      assert.equal(
        crc32c(bytes, start, start + length),
        kafkaJsCrc32c(slice),
        `${start}+${length}`,
      );
    }
  }
  assert.equal(crc32c(bytes), kafkaJsCrc32c(bytes));
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283); // the check value
});

Deno.test("installed, KafkaJS's produce requests of every version encode here, gzip ones not", async () => {
  installFastProduceRequests();
  installFastProduceRequests(); // idempotent
  const args = request(prng(5));
  for (const t of args.topicData) {
    for (const p of t.partitions) {
      p.messages = p.messages.filter((m) => typeof m.value !== "number");
    }
  }
  await withFrozenClock(async () => {
    for (const version of PRODUCE_VERSIONS) {
      assert.ok(isFastProduceRequest(version), `v${version} not installed`);
      const installed = require(produceRequestPath(version)) as typeof kafkaJs;
      const kafkaJs = kafkaJsProduceRequest(version);
      assert.notEqual(installed, kafkaJs);
      const a = installed(args), b = kafkaJs(args);
      const fields = (r: Record<string, unknown>) =>
        Object.entries(r).map(([k, v]) => [k, typeof v === "function" ? "function" : v]);
      assert.deepEqual(fields(a), fields(b), `v${version} fields`);
      assert.equal((a.expectResponse as () => boolean)(), (b.expectResponse as () => boolean)());
      assert.equal(a.apiVersion, version);
      const bytes = await bytesOf(a.encode);
      assert.ok(bytes instanceof Buffer && bytes.length > 1000, `${bytes}`);
      assert.deepEqual(bytes, await bytesOf(b.encode));
      const gzip = installed({ ...args, compression: 1 });
      assert.equal(gzip.encode.toString(), kafkaJs({ ...args, compression: 1 }).encode.toString());
    }
  });
});

Deno.test("the broker takes what the fast encoding sends (CRC checked) and returns it unchanged", async () => {
  const connection = await stackConnection();
  const kafka = createKafka(connection.kafka, { clientId: "produce-encoder-test" });
  installFastProduceRequests();
  const topic = `produce-encoder-${crypto.randomUUID()}`;
  const admin = kafka.admin();
  const producer = kafka.producer({ createPartitioner: createKeyPartitioner });
  const consumer = kafka.consumer({ groupId: `${topic}-g` });
  try {
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
    await producer.connect();
    const random = prng(11);
    const sent = Array.from({ length: 3000 }, (_, i) => ({
      key: i % 10 === 0 ? null : `k-${i}-${text(random, 8, 0.7)}`,
      value: i % 7 === 0 ? Buffer.from([0, 1, 2, i & 0xff]) : text(random, i % 700, 0.95),
    }));
    assert.ok(isFastProduceRequest(7));
    for (let i = 0; i < sent.length; i += 1000) {
      await producer.send({ topic, acks: -1, messages: sent.slice(i, i + 1000) });
    }
    const bytes = (b: Buffer | string | null) =>
      b === null ? "null" : Buffer.from(b).toString("hex");
    const partitionOf = new Map(sent.map((m) => [bytes(m.key), m.key]));
    const received: string[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((done, fail) => {
      consumer.run({
        eachMessage: ({ partition, message }) => {
          const key = partitionOf.get(bytes(message.key));
          if (key !== null) {
            assert.ok(key !== undefined, "a key that was not sent");
            assert.equal(partition, (kafkaJsMurmur2(key) & 0x7fffffff) % 3, `key ${key}`);
          }
          received.push(`${bytes(message.key)} ${bytes(message.value)}`);
          if (received.length === sent.length) done();
          return Promise.resolve();
        },
      }).catch(fail);
    });
    assert.deepEqual(received.sort(), sent.map((m) => `${bytes(m.key)} ${bytes(m.value)}`).sort());
  } finally {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
    await deleteTopics(connection, [topic]);
  }
});
