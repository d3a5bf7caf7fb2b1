import assert from "node:assert/strict";
import { join } from "node:path";
import { Kafka, logLevel } from "kafkajs";
import { describeKafkaError, withDeadline } from "./kafka.ts";
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
