/**
 * End-to-end: each producer flag, run from the command line against the real broker, has an
 * effect seen from outside the producer: in the broker's own log files, through kcat, or on the
 * wire through a tap (a TCP proxy in front of the broker that reads the requests passing by).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Creds } from "../lib/config/creds.ts";
import { qualify } from "../lib/postgres/schema.ts";
import {
  deleteTopics,
  ROOT,
  runScript,
  sh,
  sql,
  stackConnection,
  stackCreds,
  stackInfo,
  uniqueSuffix,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

const PLAINTEXT = stackInfo().kafka.plaintext;

/** Runs `fn` with a fresh topic name; deletes the topic afterwards. */
async function withTopic(prefix: string, fn: (topic: string) => Promise<void>): Promise<void> {
  const topic = `${prefix}_${uniqueSuffix()}`;
  try {
    await fn(topic);
  } finally {
    await deleteTopics(await stackConnection(), [topic]);
  }
}

/** Runs producer.ts with the creds file and topic; fails the test on a non-zero exit. */
async function produce(creds: string, topic: string, ...args: string[]): Promise<string> {
  const r = await runScript("producer.ts", ["--creds", creds, "--topic-name", topic, ...args]);
  assert.equal(r.code, 0, `producer ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** The topic's messages as kcat (an independent client) reads them: `[partition, value]`. */
async function readTopic(topic: string): Promise<[number, string][]> {
  const out = await sh(`kcat -b ${PLAINTEXT} -C -t ${topic} -e -q -f '%p\\t%s\\n'`);
  return out.split("\n").filter(Boolean).map((line) => {
    const tab = line.indexOf("\t");
    return [Number(line.slice(0, tab)), line.slice(tab + 1)];
  });
}

/** Partition count of a topic, from kcat's metadata. */
async function partitionCount(topic: string): Promise<number> {
  const meta = JSON.parse(await sh(`kcat -b ${PLAINTEXT} -L -t ${topic} -J`));
  return meta.topics[0].partitions.length;
}

/** Record batches of one partition as the broker stored them (Kafka's v2 batch header). */
async function storedBatches(
  topic: string,
  partition: number,
): Promise<{ records: number; codec: number }[]> {
  const properties = await Deno.readTextFile(join(ROOT, ".stack/kafka/server.properties"));
  const logDir = /^log\.dirs=(.+)$/m.exec(properties)![1]!.trim();
  const dir = join(logDir, `${topic}-${partition}`);
  const segments = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".log"))
    .sort();
  const batches = [];
  for (const segment of segments) {
    const bytes = await Deno.readFile(join(dir, segment));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // baseOffset int64, batchLength int32, leaderEpoch int32, magic int8, crc int32,
    // attributes int16 (bits 0-2: codec), lastOffsetDelta int32, 2 timestamps int64,
    // producerId int64, producerEpoch int16, baseSequence int32, record count int32
    for (let at = 0; at + 61 <= bytes.length; at += 12 + view.getInt32(at + 8)) {
      assert.equal(view.getInt8(at + 16), 2, "record batch magic");
      batches.push({ records: view.getInt32(at + 57), codec: view.getInt16(at + 21) & 7 });
    }
  }
  return batches;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await conn.write(data.subarray(done));
}

/** Calls `onFrame` with each size-prefixed Kafka frame read from `conn`, in order. */
async function readFrames(
  conn: Deno.Conn,
  onFrame: (frame: Uint8Array, view: DataView) => Promise<void>,
): Promise<void> {
  let buffered = new Uint8Array(0);
  const chunk = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(chunk);
    if (n === null) return;
    const joined = new Uint8Array(buffered.length + n);
    joined.set(buffered);
    joined.set(chunk.subarray(0, n), buffered.length);
    buffered = joined;
    while (buffered.length >= 4) {
      const size = new DataView(buffered.buffer, buffered.byteOffset).getInt32(0);
      if (buffered.length < 4 + size) break;
      const frame = buffered.slice(0, 4 + size);
      buffered = buffered.slice(4 + size);
      await onFrame(frame, new DataView(frame.buffer));
    }
  }
}

/**
 * A TCP proxy in front of the broker's plaintext listener. Metadata answers name the proxy instead
 * of the broker, so every request of a client pointed at it passes through. It records the acks of
 * each produce request and the most produce requests awaiting an answer at once; it can hold
 * produce answers back, or cut the connection on every produce request (a broker that never
 * acknowledges).
 */
class KafkaTap {
  /** `acks` of each produce request seen. */
  readonly acks: number[] = [];
  /** Most produce requests (acks ≠ 0) sent and not yet answered, on one connection. */
  maxProduceInFlight = 0;
  /** Hold each produce answer back this long. */
  produceAnswerDelayMs = 0;
  /** Close the connection instead of forwarding a produce request. */
  cutProduce = false;
  readonly port: number;
  readonly #listener: Deno.TcpListener;
  readonly #upstreamPort: number;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();

  constructor() {
    this.#upstreamPort = Number(PLAINTEXT.split(":")[1]);
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#listener.addr.port;
    this.#track(this.#accept());
  }

  #track(task: Promise<void>): void {
    const tracked = task.catch(() => {}).finally(() => this.#tasks.delete(tracked));
    this.#tasks.add(tracked);
  }

  async #accept(): Promise<void> {
    for await (const client of this.#listener) this.#track(this.#serve(client));
  }

  async #serve(client: Deno.Conn): Promise<void> {
    const broker = await Deno.connect({ hostname: "127.0.0.1", port: this.#upstreamPort });
    this.#conns.add(client).add(broker);
    const asked = new Map<number, { apiKey: number; version: number }>();
    let produceInFlight = 0;
    const close = () => {
      for (const conn of [client, broker]) {
        if (this.#conns.delete(conn)) conn.close();
      }
    };
    const requests = readFrames(client, async (frame, view) => {
      const apiKey = view.getInt16(4);
      const version = view.getInt16(6);
      if (apiKey === 0) {
        let at = 12 + 2 + Math.max(0, view.getInt16(12)); // after the client id
        if (version >= 3) at += 2 + Math.max(0, view.getInt16(at)); // transactional id
        const acks = view.getInt16(at);
        this.acks.push(acks);
        if (this.cutProduce) return close();
        if (acks !== 0) {
          produceInFlight++;
          this.maxProduceInFlight = Math.max(this.maxProduceInFlight, produceInFlight);
        }
      }
      asked.set(view.getInt32(8), { apiKey, version });
      await writeAll(broker, frame);
    });
    const answers = readFrames(broker, async (frame, view) => {
      const request = asked.get(view.getInt32(4));
      asked.delete(view.getInt32(4));
      if (request?.apiKey === 3) {
        assert.ok(request.version <= 8, `metadata v${request.version} is not parsed`);
        let at = 8 + (request.version >= 3 ? 4 : 0); // after the throttle time
        const brokers = view.getInt32(at);
        at += 4;
        for (let i = 0; i < brokers; i++) {
          at += 4; // node id
          at += 2 + view.getInt16(at); // host
          if (view.getInt32(at) === this.#upstreamPort) view.setInt32(at, this.port);
          at += 4;
          if (request.version >= 1) at += 2 + Math.max(0, view.getInt16(at)); // rack
        }
      }
      if (request?.apiKey === 0) {
        if (this.produceAnswerDelayMs) {
          await new Promise((r) => setTimeout(r, this.produceAnswerDelayMs));
        }
        produceInFlight--;
      }
      await writeAll(client, frame);
    });
    try {
      await Promise.race([requests, answers]);
    } finally {
      close();
      await Promise.allSettled([requests, answers]);
    }
  }

  /** Creds (PLAINTEXT) that send the producer through the tap. */
  creds(): Creds {
    const creds = stackCreds("PLAINTEXT");
    return { ...creds, kafka: { ...creds.kafka, hostname: "127.0.0.1", port: this.port } };
  }

  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) conn.close();
    this.#conns.clear();
    while (this.#tasks.size) await Promise.allSettled([...this.#tasks]);
  }
}

/** Runs `fn` with a tap; closes it afterwards. */
async function withTap(fn: (tap: KafkaTap) => Promise<void>): Promise<void> {
  const tap = new KafkaTap();
  try {
    await fn(tap);
  } finally {
    await tap.close();
  }
}

Deno.test("producer --compression gzip stores gzip record batches in the broker's log", async () => {
  const creds = await writeStackCreds();
  await withTopic("flags_gzip", async (topic) => {
    await produce(creds, topic, "--partitions", "1", "--num", "300", "--compression", "gzip");
    const gzip = await storedBatches(topic, 0);
    assert.ok(gzip.length > 0);
    assert.deepEqual(new Set(gzip.map((b) => b.codec)), new Set([1]), "codec 1 is gzip");
    assert.equal(gzip.reduce((n, b) => n + b.records, 0), 300);
    const read = await readTopic(topic);
    assert.equal(read.length, 300);
    assert.ok(read.every(([, value]) => typeof JSON.parse(value).ticket_id === "string"));
  });
  await withTopic("flags_plain", async (topic) => {
    await produce(creds, topic, "--partitions", "1", "--num", "300");
    const plain = await storedBatches(topic, 0);
    assert.deepEqual(new Set(plain.map((b) => b.codec)), new Set([0]), "no compression by default");
  });
});

Deno.test("producer --batch-size puts that many tickets in one record batch; --partitions sets the topic's partitions", async () => {
  const creds = await writeStackCreds();
  await withTopic("flags_batch", async (topic) => {
    await produce(creds, topic, "--partitions", "1", "--num", "20", "--batch-size", "7");
    // batches in flight together may land in any order
    const sizes = (await storedBatches(topic, 0)).map((b) => b.records).sort((a, b) => a - b);
    assert.deepEqual(sizes, [6, 7, 7]);
  });
  await withTopic("flags_parts", async (topic) => {
    const out = await produce(creds, topic, "--partitions", "5", "--num", "200");
    assert.match(out, /^sent 200 tickets /m);
    assert.equal(await partitionCount(topic), 5);
    const read = await readTopic(topic);
    assert.equal(read.length, 200);
    assert.deepEqual(new Set(read.map(([p]) => p)), new Set([0, 1, 2, 3, 4]));
  });
});

Deno.test("producer --seed makes the same tickets again, another seed other tickets", async () => {
  const creds = await writeStackCreds();
  await withTopic("flags_seed", async (topic) => {
    // one partition: the log holds the three runs in order
    for (const seed of ["7", "7", "8"]) {
      await produce(creds, topic, "--partitions", "1", "--num", "50", "--seed", seed);
    }
    const values = (await readTopic(topic)).map(([, value]) => value);
    assert.equal(values.length, 150);
    const [first, again, other] = [values.slice(0, 50), values.slice(50, 100), values.slice(100)];
    assert.deepEqual(again, first);
    const ids = (run: string[]) => run.map((v) => JSON.parse(v).ticket_id as string);
    assert.equal(new Set(ids(first)).size, 50);
    assert.equal(new Set([...ids(first), ...ids(other)]).size, 100);
  });
});

Deno.test("producer --acks 0, 1 and all are the acks of its produce requests, and every ticket arrives", async () => {
  await withTap(async (tap) => {
    const creds = await writeStackCreds(tap.creds());
    await withTopic("flags_acks", async (topic) => {
      const seen: Record<string, number[]> = {};
      for (const acks of ["0", "1", "all"]) {
        const before = tap.acks.length;
        const out = await produce(
          creds,
          topic,
          "--num",
          "200",
          "--batch-size",
          "50",
          "--acks",
          acks,
        );
        assert.match(out, /^sent 200 tickets /m);
        seen[acks] = [...new Set(tap.acks.slice(before))];
      }
      assert.deepEqual(seen, { "0": [0], "1": [1], all: [-1] });
      const ids = (await readTopic(topic)).map(([, value]) => JSON.parse(value).ticket_id);
      assert.equal(new Set(ids).size, 600);
    });
  });
});

Deno.test("producer --in-flight bounds the produce requests awaiting acknowledgement", async () => {
  await withTap(async (tap) => {
    tap.produceAnswerDelayMs = 100; // answers come late, so the producer fills its window
    const creds = await writeStackCreds(tap.creds());
    await withTopic("flags_inflight", async (topic) => {
      const most: number[] = [];
      for (const inFlight of ["1", "3"]) {
        tap.maxProduceInFlight = 0;
        await produce(creds, topic, "--num", "12", "--batch-size", "1", "--in-flight", inFlight);
        most.push(tap.maxProduceInFlight);
      }
      assert.deepEqual(most, [1, 3]);
      assert.equal((await readTopic(topic)).length, 24);
    });
  });
});

Deno.test("producer --send-timeout gives up on a broker that acknowledges nothing", async () => {
  await withTap(async (tap) => {
    const creds = await writeStackCreds(tap.creds());
    await withTopic("flags_timeout", async (topic) => {
      tap.cutProduce = true;
      const started = performance.now();
      const r = await runScript("producer.ts", [
        "--creds",
        creds,
        "--topic-name",
        topic,
        "--num",
        "5",
        "--send-timeout",
        "2",
      ]);
      const seconds = (performance.now() - started) / 1000;
      assert.equal(r.code, 1, r.stderr);
      assert.ok(tap.acks.length > 0, "the produce requests reached the tap");
      assert.match(r.stdout, /^sent 0 tickets in .*, 5 NOT sent$/m);
      // one error line, naming why
      assert.deepEqual(r.stderr.split("\n").filter((l) => l.startsWith("error:")).length, 1);
      assert.match(
        r.stderr,
        /^error: 5 tickets were not sent \((Kafka at 127\.0\.0\.1:\d+ closed|publishing to Kafka \(--send-timeout\): no answer within 2 s)/m,
      );
      // the default, 60 s, would still be retrying; KafkaJS's own retries inside a send count
      assert.ok(seconds < 15, `took ${seconds.toFixed(1)} s`);
      assert.equal((await readTopic(topic)).length, 0);
    });
  });
});

Deno.test("producer and consumer over SASL_SSL store every ticket", async () => {
  const info = stackInfo();
  assert.ok(info.kafka.saslSsl && info.kafka.saslUsername && info.kafka.saslPassword);
  const [host, port] = info.kafka.saslSsl.split(":");
  const sasl = (password: string): Creds => ({
    kafka: {
      hostname: host!,
      port: Number(port),
      securityProtocol: "SASL_SSL",
      certPath: info.certPath,
      saslUsername: info.kafka.saslUsername,
      saslPassword: password,
    },
    postgres: { uri: info.postgresUri },
  });
  await withPipeline("flags_sasl", async ({ topic, table }) => {
    const wrong = await writeStackCreds(sasl("canary-wrong-password-4471"));
    const refused = await runScript("producer.ts", ["--creds", wrong, "--topic-name", topic]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /rejected the SASL user name or password/);
    const creds = await writeStackCreds(sasl(info.kafka.saslPassword!));
    const out = await produce(creds, topic, "--num", "500");
    assert.match(out, /^sent 500 tickets /m);
    const consumed = await runScript("consumer.ts", [
      "--creds",
      creds,
      "--topic-name",
      topic,
      "--table-name",
      table,
      "--max-messages",
      "500",
    ]);
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.match(
      consumed.stdout,
      /consumed 500 messages .*stored 500, duplicates 0, conflicts 0, dead letters 0/,
    );
    const [row] = await sql<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${qualify({ schema: "public", table }).tickets}`,
    );
    assert.equal(row!.n, 500);
  });
});
