import assert from "node:assert/strict";
import type { MetricsRecord } from "./metrics.ts";
import { buildReportHtml, formatReportSummary, groupRuns, niceTicks } from "./report.ts";

function record(run: string, extra: Partial<MetricsRecord> = {}): MetricsRecord {
  return {
    ts: "2025-11-25T10:00:00.000Z",
    run,
    role: "producer",
    event: "snapshot",
    topic: "tickets",
    counts: { sent: 100 },
    elapsedSeconds: 5,
    rate: 20,
    intervalRate: 20,
    peakRssMb: 80,
    ...extra,
  };
}

function runOf(run: string, role: MetricsRecord["role"], start: string): MetricsRecord[] {
  return [0, 5, 10].map((t, i) =>
    record(run, {
      ts: start,
      role,
      event: i === 0 ? "start" : i === 2 ? "end" : "snapshot",
      elapsedSeconds: t,
      intervalRate: t * 10,
      rate: t * 8,
      counts: role === "producer" ? { sent: t * 100 } : { stored: t * 90 },
      lag: role === "consumer" ? { "0": 50 - t, "1": 20 - t } : undefined,
      latencyMs: role === "consumer" ? { p50: 10 + t, p99: 40 + t, max: 90, count: 9 } : undefined,
      peakRssMb: 70 + t,
      outcome: i === 2 ? "ok" : undefined,
    })
  );
}

/** The `<svg data-chart="id">` element of a page. */
function chart(html: string, id: string): string {
  const match = html.match(new RegExp(`<svg data-chart="${id}"[\\s\\S]*?</svg>`));
  assert.ok(match, `no ${id} chart`);
  return match[0];
}

const countSeries = (svg: string) => svg.match(/<path class="series"/g)?.length ?? 0;

Deno.test("buildReportHtml() escapes a hostile topic name everywhere", () => {
  const hostile = `<script>alert("x")</script>`;
  const html = buildReportHtml(
    runOf("run-a", "consumer", "2025-11-25T10:00:00Z").map((r) => ({
      ...r,
      topic: hostile,
      table: `"><img src=x onerror=alert(1)>`,
    })),
    { source: "<b>log</b>.jsonl" },
  );
  assert.ok(!html.includes("<script"), "a script element reached the page");
  assert.ok(!html.includes("<img"));
  assert.ok(!html.includes("<b>"));
  assert.ok(html.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
});

Deno.test("buildReportHtml() explains an empty log instead of drawing charts", () => {
  const html = buildReportHtml([], { source: "logs/metrics.jsonl", skipped: 2 });
  assert.match(html, /No runs in this metrics log yet/);
  assert.match(html, /2 lines that did not parse skipped/);
  assert.ok(!html.includes("<svg"));
  assert.equal(formatReportSummary([]), "no runs in the metrics log yet");
});

Deno.test("buildReportHtml() draws one throughput series per run, lag and latency for consumers", () => {
  const records = [
    ...runOf("aaaaaaaa-1", "producer", "2025-11-25T10:00:00Z"),
    ...runOf("bbbbbbbb-2", "producer", "2025-11-25T10:05:00Z"),
    ...runOf("cccccccc-3", "consumer", "2025-11-25T10:01:00Z"),
  ];
  const html = buildReportHtml(records, { source: "m.jsonl" });
  assert.equal(countSeries(chart(html, "throughput")), 3);
  assert.equal(countSeries(chart(html, "lag")), 1);
  assert.equal(countSeries(chart(html, "latency")), 2, "p50 and p99 of the one consumer run");
  assert.equal(html.match(/<tr><td>/g)?.length, 3, "one table row per run");
  assert.match(chart(html, "lag"), /d="M[\d.]+,[\d.]+L/);
});

Deno.test("buildReportHtml() shows a run with a single record as a point", () => {
  const html = buildReportHtml([record("solo-run", { event: "start", elapsedSeconds: 0 })], {
    source: "m.jsonl",
  });
  assert.equal(countSeries(chart(html, "throughput")), 1);
  assert.match(chart(html, "throughput"), /<circle class="point"/);
  assert.match(chart(html, "lag"), /no consumer lag recorded/);
  assert.match(html, /no end record/);
});

Deno.test("groupRuns() orders runs by start and records by elapsed time", () => {
  const runs = groupRuns([
    record("late", { ts: "2025-11-25T11:00:00Z", elapsedSeconds: 10, outcome: "ok" }),
    record("early", { ts: "2025-11-25T09:00:00Z" }),
    record("late", { ts: "2025-11-25T10:59:50Z", elapsedSeconds: 0, event: "start" }),
  ]);
  assert.deepEqual(runs.map((r) => r.run), ["early", "late"]);
  assert.equal(runs[1]!.records[0]!.event, "start");
  assert.equal(runs[1]!.durationSeconds, 10);
});

Deno.test("niceTicks() steps roundly from 0 to at least the maximum", () => {
  assert.deepEqual(niceTicks(97), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(0), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(1200, 4), [0, 500, 1000, 1500]);
});

Deno.test("formatReportSummary() gives per role totals, rates, latest p99 and peak RSS", () => {
  const text = formatReportSummary([
    ...runOf("aaaaaaaa-1", "producer", "2025-11-25T10:00:00Z"),
    ...runOf("cccccccc-3", "consumer", "2025-11-25T10:01:00Z"),
  ]);
  assert.match(text, /^2 runs found/);
  assert.match(
    text,
    /producer: 1 run, sent 1,000, best 80 msg\/s, last 80 msg\/s, peak RSS 80 MiB/,
  );
  assert.match(text, /consumer: 1 run, stored 900, .*latest p99 50 ms, peak RSS 80 MiB/);
});
