import assert from "node:assert/strict";
import { join } from "node:path";
import { Kafka, logLevel } from "kafkajs";
import { createKafka, describeKafkaError, isRetriableKafkaError, withDeadline } from "./kafka.ts";
import { stackConnection, stackInfo } from "../../testing/testing.ts";

Deno.test("the SSL listener refuses a client without a certificate, quickly and clearly", async () => {
  const info = stackInfo();
  const kafka = new Kafka({
    brokers: [info.kafka.ssl],
    ssl: { ca: [Deno.readTextFileSync(join(info.certPath, "ca.pem"))], rejectUnauthorized: true },
    connectionTimeout: 5_000,
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  const started = performance.now();
  const error = await withDeadline(
    admin.connect().then(() => admin.describeCluster()),
    15_000,
    "connect",
  )
    .then(() => undefined, (e) => e);
  await admin.disconnect().catch(() => {});
  assert.ok(error, "the broker accepted a client without a certificate");
  const settings = (await stackConnection()).kafka;
  const described = describeKafkaError(error, settings);
  assert.match(described.code, /KAFKA_TLS|KAFKA_UNREACHABLE/, `${described.message} / ${error}`);
  assert.ok(performance.now() - started < 15_000);
});

Deno.test("retriable comes from KafkaJS: a message over the topic's limit is final, a refused connection is not", async () => {
  const settings = (await stackConnection()).kafka;
  const kafka = createKafka(settings, { clientId: "retriable-test", retries: 1 });
  const admin = kafka.admin();
  const topic = `retriable-${crypto.randomUUID()}`;
  await admin.connect();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  try {
    await admin.createTopics({
      topics: [{
        topic,
        numPartitions: 1,
        configEntries: [{ name: "max.message.bytes", value: "1024" }],
      }],
      waitForLeaders: true,
    });
    await producer.connect();
    const tooLarge = await producer.send({ topic, messages: [{ value: "x".repeat(10_000) }] })
      .then(() => undefined, (e) => e);
    assert.ok(tooLarge, "the broker took a message over max.message.bytes");
    assert.equal(isRetriableKafkaError(tooLarge), false, String(tooLarge));
    assert.equal(describeKafkaError(tooLarge, settings).retriable, false);
  } finally {
    await producer.disconnect().catch(() => {});
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
  }

  const closed = { ...settings, brokers: ["127.0.0.1:1"], connectTimeoutMs: 2_000 };
  const nobody = createKafka(closed, { retries: 0 }).admin();
  const refused = await nobody.connect().then(() => undefined, (e) => e);
  await nobody.disconnect().catch(() => {});
  assert.ok(refused, "connected to port 1");
  assert.equal(isRetriableKafkaError(refused), true, String(refused));
  const described = describeKafkaError(refused, closed);
  assert.equal(described.code, "KAFKA_UNREACHABLE", described.message);
  assert.equal(described.retriable, true);
});

Deno.test("a wrong SASL password is final and named as such", async () => {
  const info = stackInfo();
  if (!info.kafka.saslSsl) return; // the stack was started without a SASL listener
  const settings = {
    ...(await stackConnection()).kafka,
    brokers: [info.kafka.saslSsl],
    securityProtocol: "SASL_SSL" as const,
    sasl: { username: info.kafka.saslUsername ?? "tickets", password: "not-the-password" },
  };
  const admin = createKafka(settings, { retries: 0 }).admin();
  const error = await admin.connect().then(() => undefined, (e) => e);
  await admin.disconnect().catch(() => {});
  assert.ok(error, "the broker took a wrong password");
  const described = describeKafkaError(error, settings);
  assert.equal(described.code, "KAFKA_AUTH", described.message);
  assert.equal(described.retriable, false);
  assert.equal(isRetriableKafkaError(error), false);
});
