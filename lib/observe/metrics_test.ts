import assert from "node:assert/strict";
import { join } from "node:path";
import { LatencySample, latencyStats, MetricsLog, readMetrics } from "./metrics.ts";
import { registerSecret } from "../log.ts";

Deno.test("latencyStats() gives p50, p99 and max", () => {
  const values = Array.from({ length: 1000 }, (_, i) => i + 1);
  assert.deepEqual(latencyStats(values), { p50: 501, p99: 991, max: 1000, count: 1000 });
  assert.equal(latencyStats([]), undefined);
});

Deno.test("LatencySample() keeps the true max and count beyond its capacity", () => {
  const sample = new LatencySample(100);
  for (let i = 0; i < 10_000; i++) sample.add(i % 500);
  sample.add(9_999);
  const stats = sample.take()!;
  assert.equal(stats.max, 9_999);
  assert.equal(stats.count, 10_001);
  assert.equal(sample.take(), undefined);
});

Deno.test("MetricsLog() appends parseable records of one run, with secrets redacted", async () => {
  const path = join(await Deno.makeTempDir(), "sub", "metrics.jsonl");
  registerSecret("canary-metrics-secret");
  const log = new MetricsLog(path, {
    role: "consumer",
    topic: "canary-metrics-secret",
    table: "public.t",
  });
  log.write("start", { stored: 0 }, 0);
  log.write("end", { stored: 10 }, 10, { outcome: "ok", lag: { "0": 0 } });
  log.close();
  const { records, skipped } = readMetrics(path);
  assert.equal(skipped, 0);
  assert.deepEqual(records.map((r) => r.event), ["start", "end"]);
  assert.equal(records[0]!.run, records[1]!.run);
  assert.equal(records[1]!.counts.stored, 10);
  assert.ok(records[1]!.peakRssMb > 0);
  assert.ok(!Deno.readTextFileSync(path).includes("canary-metrics-secret"));
});
