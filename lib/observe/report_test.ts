import assert from "node:assert/strict";
import type { MetricsRecord } from "./metrics.ts";
import {
  buildReportHtml,
  deadLettersByReason,
  formatReportSummary,
  groupRuns,
  type ReportRecord,
  selectRuns,
  UNRECORDED_REASON,
} from "./report.ts";

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

/** The panels (`<svg ... data-chart="id" data-run=...>`) of a grid of small multiples. */
function panels(html: string, id: string): string[] {
  return html.match(
    new RegExp(`<svg class="panel[^"]*" data-chart="${id}"[\\s\\S]*?</svg>`, "g"),
  ) ??
    [];
}

const countSeries = (svg: string) => svg.match(/<path class="series"/g)?.length ?? 0;
const tableRows = (html: string) => html.match(/<tr data-run=/g)?.length ?? 0;

/** `n` runs, alternately producer and consumer, a minute apart, on topics t0, t1, t2. */
function manyRuns(n: number): MetricsRecord[] {
  return Array.from({ length: n }, (_, i) =>
    runOf(
      `${String(i).padStart(4, "0")}cafe-${i}`,
      i % 2 ? "consumer" : "producer",
      new Date(Date.UTC(2025, 10, 25, 10, i)).toISOString(),
    ).map((r) => ({ ...r, topic: `t${i % 3}`, intervalRate: r.intervalRate * (i + 1) }))).flat();
}

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

Deno.test("buildReportHtml() draws a panel per run: throughput for all, lag and latency for consumers", () => {
  const records = [
    ...runOf("aaaaaaaa-1", "producer", "2025-11-25T10:00:00Z"),
    ...runOf("bbbbbbbb-2", "producer", "2025-11-25T10:05:00Z"),
    ...runOf("cccccccc-3", "consumer", "2025-11-25T10:01:00Z"),
  ];
  const html = buildReportHtml(records, { source: "m.jsonl" });
  const throughput = panels(html, "throughput");
  assert.equal(throughput.length, 3);
  assert.ok(throughput.every((p) => countSeries(p) === 1));
  assert.deepEqual(panels(html, "lag").map(countSeries), [1]);
  assert.deepEqual(panels(html, "latency").map(countSeries), [2], "p99 and p50 of the consumer");
  assert.match(panels(html, "lag")[0]!, /data-run="cccccccc-3"/);
  assert.match(panels(html, "lag")[0]!, /d="M[\d.]+,[\d.]+L/);
  assert.equal(tableRows(html), 3, "one table row per run");
  assert.equal(html.match(/<rect class="bar"/g)?.length, 3, "one bar per run");
});

Deno.test("buildReportHtml() shows the last 10 of 60 runs by default, each panel on one scale", () => {
  const records = manyRuns(60);
  const html = buildReportHtml(records, { source: "m.jsonl" });
  assert.equal(tableRows(html), 10);
  assert.equal(panels(html, "throughput").length, 10);
  assert.match(html, /Showing the last 10 of 60 runs/);
  assert.ok(html.includes('data-run="0059cafe-59"') && !html.includes('data-run="0049cafe-49"'));
  const all = buildReportHtml(records, { source: "m.jsonl", selection: { last: 60 } });
  assert.equal(tableRows(all), 60);
  assert.equal(panels(all, "throughput").length, 60);
  assert.equal(panels(all, "lag").length, 30);
  assert.equal(all.match(/same scale in every panel/g)?.length, 3, "one shared scale per grid");
  // every panel of a grid is drawn against the same top tick
  const tops = new Set(
    panels(all, "throughput").map((p) => [...p.matchAll(/dy="0.35em">([^<]+)</g)].at(-1)?.[1]),
  );
  assert.equal(tops.size, 1, `panels with different scales: ${[...tops]}`);
});

Deno.test("selectRuns() filters by topic and run id prefix, then keeps the newest --last", () => {
  const runs = groupRuns(manyRuns(60));
  const t1 = selectRuns(runs, { topic: "t1", last: 5 });
  assert.equal(t1.matched, 20);
  assert.deepEqual(t1.runs.map((r) => r.run.slice(0, 4)), ["0046", "0049", "0052", "0055", "0058"]);
  const picked = selectRuns(runs, { run: "0003,0007cafe" });
  assert.deepEqual(picked.runs.map((r) => r.run), ["0003cafe-3", "0007cafe-7"]);
  const none = selectRuns(runs, { topic: "nope" });
  assert.deepEqual([none.runs.length, none.total], [0, 60]);
  assert.deepEqual(none.topics, ["t0", "t1", "t2"]);
  const html = buildReportHtml(manyRuns(6), { source: "m.jsonl", selection: { topic: "nope" } });
  assert.match(html, /No run matches .*topic nope.*Topics in the log: t0, t1, t2/);
});

Deno.test("deadLettersByReason() sums recorded reasons, else splits rejected from the rest", () => {
  const recorded: ReportRecord[] = runOf("dddddddd-1", "consumer", "2025-11-25T10:00:00Z").map((
    r,
  ) => ({
    ...r,
    counts: { ...r.counts, deadLetters: 7 },
    deadLettersByReason: { BAD_JSON: 4, SEAT_TAKEN: 3 },
  }));
  const unrecorded = runOf("eeeeeeee-2", "consumer", "2025-11-25T10:02:00Z").map((r) => ({
    ...r,
    counts: { ...r.counts, deadLetters: 5, rejected: 2 },
  }));
  const runs = groupRuns([...recorded, ...unrecorded]);
  assert.deepEqual(deadLettersByReason(runs), [
    { reason: "BAD_JSON", letters: 4, runs: 1 },
    { reason: "SEAT_TAKEN", letters: 3, runs: 1 },
    { reason: "DB_REJECTED", letters: 2, runs: 1 },
    { reason: UNRECORDED_REASON, letters: 3, runs: 1 },
  ]);
  const html = buildReportHtml([...recorded, ...unrecorded], { source: "m.jsonl" });
  assert.match(html, /<tr data-reason="BAD_JSON"><td>BAD_JSON<\/td><td class="num">4</);
  assert.match(formatReportSummary([...recorded, ...unrecorded]), /dead letters: BAD_JSON 4, /);
  assert.match(
    buildReportHtml(runOf("ffffffff-3", "consumer", "2025-11-25T10:00:00Z"), { source: "m" }),
    /No dead letters in these runs/,
  );
});

Deno.test("buildReportHtml() puts role, outcome, counts (cancelled too), rates, p99 and peak memory in the table", () => {
  const records = runOf("cccccccc-3", "consumer", "2025-11-25T10:01:00Z");
  records[2]!.outcome = "PostgreSQL unreachable";
  records[2]!.counts = { stored: 900, cancelled: 7 };
  const row = /<tr data-run="cccccccc-3">.*?<\/tr>/.exec(buildReportHtml(records, { source: "m" }))
    ?.[0];
  assert.ok(row);
  const cells = [...row.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((m) => m[1]);
  assert.deepEqual(cells, [
    "#1",
    "cccccccc",
    "consumer",
    "tickets",
    "11-25 10:01",
    "10 s",
    "PostgreSQL unreachable",
    "—",
    "900",
    "7",
    "—",
    "—",
    "80",
    "100",
    "50 ms",
    "80 MiB",
  ]);
  assert.match(row, /class="bad"/);
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
  assert.match(text, /consumer: 1 run, stored 900, best .*latest p99 50 ms, peak RSS 80 MiB/);
  assert.doesNotMatch(text, /cancelled/); // a run without cancellations does not mention them
  const withCancels = runOf("dddddddd-4", "consumer", "2025-11-25T10:02:00Z");
  withCancels[2]!.counts = { stored: 900, cancelled: 45 };
  assert.match(formatReportSummary(withCancels), /consumer: 1 run, stored 900, cancelled 45, best/);
});
