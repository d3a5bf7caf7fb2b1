import assert from "node:assert/strict";
import { AppError } from "../errors.ts";
import { ConsumerMetrics, ProducerMetrics, serveMetrics } from "./prometheus.ts";
import { seriesValue } from "../../testing/prometheus.ts";

const chunk = {
  committed: true,
  messages: 5,
  stored: 2,
  duplicates: 1,
  conflicts: 0,
  cancelled: 3,
  deadLetters: { SEAT_TAKEN: 1, BAD_JSON: 1 },
  lost: 0,
  writeSeconds: 0.02,
  latencySeconds: [0.5, 2],
};

Deno.test("ConsumerMetrics.written() adds a chunk's counts, cancellations, dead letters by reason, fences and histograms", async () => {
  const metrics = new ConsumerMetrics({ topic: "t", group: "g", table: "public.t" });
  metrics.written(chunk);
  metrics.written({
    ...chunk,
    committed: false,
    messages: 0,
    stored: 0,
    duplicates: 0,
    cancelled: 1,
  });
  metrics.setLag({ "0": 7, "1": 0 });
  const text = await metrics.text();
  const labels = { group: "g", role: "consumer", table: "public.t", topic: "t" };
  assert.equal(seriesValue(text, "tickets_received_total", labels), 5);
  assert.equal(seriesValue(text, "tickets_stored_total", labels), 2);
  assert.equal(seriesValue(text, "tickets_fenced_batches_total", labels), 1);
  assert.equal(seriesValue(text, "tickets_cancelled_total", labels), 4);
  assert.equal(
    seriesValue(text, "tickets_dead_letters_total", { ...labels, reason: "SEAT_TAKEN" }),
    2,
  );
  assert.equal(
    seriesValue(text, "tickets_consumer_lag_messages", { ...labels, partition: "0" }),
    7,
  );
  assert.equal(seriesValue(text, "tickets_batch_write_seconds_count", labels), 2);
  assert.equal(
    seriesValue(text, "tickets_publish_to_row_seconds_bucket", { ...labels, le: "1" }),
    2,
  );
  assert.equal(seriesValue(text, "tickets_publish_to_row_seconds_count", labels), 4);
  assert.ok((seriesValue(text, "process_resident_memory_bytes", labels) ?? 0) > 1_000_000);
  // one registry per run: a second run's metrics start from zero
  const other = await new ConsumerMetrics({ topic: "t", group: "g", table: "public.t" }).text();
  assert.equal(seriesValue(other, "tickets_stored_total", labels), 0);
});

Deno.test("serveMetrics() serves /metrics in Prometheus's text format until closed", async () => {
  const metrics = new ProducerMetrics("t");
  metrics.sent.inc(42);
  const server = serveMetrics(metrics, { port: 0 });
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const response = await fetch(server.url);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    assert.equal(seriesValue(text, "tickets_sent_total", { role: "producer", topic: "t" }), 42);
    assert.match(text, /# TYPE tickets_sent_total counter/);
    const other = await fetch(server.url.replace("/metrics", "/"));
    assert.equal(other.status, 404);
    await other.body?.cancel();
  } finally {
    await server.close();
  }
  await assert.rejects(fetch(server.url));
});

Deno.test("serveMetrics() on a port in use is a usage error naming the flags", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    assert.throws(
      () => serveMetrics(new ProducerMetrics("t"), { port }),
      (error: unknown) =>
        error instanceof AppError && error.code === "BAD_INPUT" &&
        /--metrics-port/.test(error.message),
    );
  } finally {
    listener.close();
  }
});
