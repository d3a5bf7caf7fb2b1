import assert from "node:assert/strict";
import { parseConsumerSummary, parseProducerPerformance } from "./parse.ts";

Deno.test("parseProducerPerformance() reads the final line, not the interim ones", () => {
  const output = [
    "107173 records sent, 21319.5 records/sec (8.13 MB/sec), 1566.8 ms avg latency, 2472.0 ms max latency.",
    "200000 records sent, 28405.056100 records/sec (10.84 MB/sec), 1829.04 ms avg latency, 2549.00 ms max latency, 1965 ms 50th, 2497 ms 95th, 2530 ms 99th, 2543 ms 99.9th.",
  ].join("\n");
  assert.deepEqual(parseProducerPerformance(output), {
    records: 200000,
    recordsPerSecond: 28405.0561,
    megabytesPerSecond: 10.84,
    avgLatencyMs: 1829.04,
    maxLatencyMs: 2549,
    p50LatencyMs: 1965,
    p99LatencyMs: 2530,
  });
});

Deno.test("parseProducerPerformance() gives undefined without a final line", () => {
  assert.equal(parseProducerPerformance("Exception in thread main"), undefined);
});

Deno.test("parseConsumerSummary() reads count, seconds and rate", () => {
  const line =
    "consumed 5000 messages in 1.25 s of work (4000 tickets/s): stored 5000, duplicates 0, conflicts 0, dead letters 0";
  assert.deepEqual(parseConsumerSummary(`noise\n${line}\n`), {
    consumed: 5000,
    seconds: 1.25,
    ticketsPerSecond: 4000,
    stored: 5000,
  });
  assert.equal(parseConsumerSummary("error: no topic"), undefined);
});
