/**
 * The metrics report: turns the metrics history (see `metrics.ts`) into one self-contained HTML
 * page, with charts drawn here as inline SVG (nothing is fetched), and into a short text summary.
 * @module
 */
import type { MetricsRecord } from "./metrics.ts";

/** Default HTML page written by `deno task report`. */
export const DEFAULT_REPORT_PATH = "logs/report.html";

/** The records of one producer or consumer run, with the figures the report shows. */
export interface RunSummary {
  run: string;
  role: MetricsRecord["role"];
  topic: string;
  table?: string;
  /** Records in time order. */
  records: MetricsRecord[];
  /** ISO time of the first record. */
  start: string;
  durationSeconds: number;
  /** Counts of the last record. */
  counts: MetricsRecord["counts"];
  /** Messages per second over the whole run (the last record's `rate`). */
  rate: number;
  peakRssMb: number;
  /** The `end` record's outcome; undefined while the run has no `end`. */
  outcome?: string;
}

/** One line of a chart. */
export interface Series {
  label: string;
  color: string;
  points: Array<[x: number, y: number]>;
  dashed?: boolean;
}

/** What `lineChart` draws. */
export interface ChartOptions {
  /** Value of the svg's `data-chart` attribute. */
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Shown instead of lines when no series has a point. */
  emptyMessage: string;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"];
const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for HTML and SVG content and attribute values. */
export function escapeHtml(text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Groups records by run id; runs in start order, each run's records in time order. */
export function groupRuns(records: MetricsRecord[]): RunSummary[] {
  const byRun = new Map<string, MetricsRecord[]>();
  for (const record of records) {
    if (!record || typeof record.run !== "string") continue;
    const list = byRun.get(record.run);
    if (list) list.push(record);
    else byRun.set(record.run, [record]);
  }
  const runs = [...byRun.values()].map((list): RunSummary => {
    list.sort((a, b) => (a.elapsedSeconds ?? 0) - (b.elapsedSeconds ?? 0));
    const first = list[0]!;
    const last = list[list.length - 1]!;
    return {
      run: first.run,
      role: first.role,
      topic: first.topic,
      table: list.find((r) => r.table)?.table,
      records: list,
      start: String(first.ts ?? ""),
      durationSeconds: last.elapsedSeconds ?? 0,
      counts: last.counts ?? {},
      rate: last.rate ?? 0,
      peakRssMb: maxOf(list.map((r) => r.peakRssMb)),
      outcome: list.find((r) => r.event === "end")?.outcome,
    };
  });
  return runs.sort((a, b) => a.start.localeCompare(b.start));
}

/** Round tick values from 0 to at least `max` (about `target` steps of 1, 2, 2.5 or 5 × 10^k). */
export function niceTicks(max: number, target = 5): number[] {
  const top = Number.isFinite(max) && max > 0 ? max : 1;
  const raw = top / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const steps = Math.ceil(top / step - 1e-9);
  return Array.from({ length: steps + 1 }, (_, i) => Number((i * step).toPrecision(12)));
}

/** A number for people: thousands separators, at most `digits` decimals. */
export function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

function maxOf(values: number[]): number {
  return values.reduce((max, v) => (Number.isFinite(v) && v > max ? v : max), 0);
}

function tickLabel(value: number): string {
  if (value >= 1e6) return `${formatNumber(value / 1e6, 2)}M`;
  if (value >= 1e4) return `${formatNumber(value / 1e3, 1)}k`;
  return formatNumber(value, 2);
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${formatNumber(seconds, 1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m < 60 ? `${m}m ${String(s).padStart(2, "0")}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** Draws a line chart as an inline SVG; each series is one `<path class="series">`. */
export function lineChart(options: ChartOptions): string {
  const [width, height, left, right, top, bottom] = [960, 330, 72, 24, 40, 52];
  const plotted = options.series
    .map((s) => ({ ...s, points: s.points.filter((p) => p.every(Number.isFinite)) }))
    .filter((s) => s.points.length > 0);
  const xTicks = niceTicks(maxOf(plotted.flatMap((s) => s.points.map((p) => p[0]))), 8);
  const yTicks = niceTicks(maxOf(plotted.flatMap((s) => s.points.map((p) => p[1]))), 5);
  const xMax = xTicks[xTicks.length - 1]!;
  const yMax = yTicks[yTicks.length - 1]!;
  const x = (v: number) => (left + (v / xMax) * (width - left - right)).toFixed(1);
  const y = (v: number) => (height - bottom - (v / yMax) * (height - top - bottom)).toFixed(1);
  const out = [
    `<svg data-chart="${escapeHtml(options.id)}" viewBox="0 0 ${width} ${height}" role="img"` +
    ` aria-label="${escapeHtml(options.title)}">`,
    `<text class="title" x="${left}" y="22">${escapeHtml(options.title)}</text>`,
  ];
  for (const t of yTicks) {
    out.push(
      `<line class="grid" x1="${left}" x2="${width - right}" y1="${y(t)}" y2="${y(t)}"/>`,
      `<text class="tick" x="${left - 8}" y="${y(t)}" text-anchor="end" dy="0.35em">` +
        `${tickLabel(t)}</text>`,
    );
  }
  for (const t of xTicks) {
    out.push(
      `<line class="axis" x1="${x(t)}" x2="${x(t)}" y1="${height - bottom}" y2="${
        height - bottom + 5
      }"/>`,
      `<text class="tick" x="${x(t)}" y="${height - bottom + 18}" text-anchor="middle">` +
        `${tickLabel(t)}</text>`,
    );
  }
  out.push(
    `<line class="axis" x1="${left}" x2="${width - right}" y1="${height - bottom}" y2="${
      height - bottom
    }"/>`,
    `<line class="axis" x1="${left}" x2="${left}" y1="${top}" y2="${height - bottom}"/>`,
    `<text class="label" x="${(left + width - right) / 2}" y="${height - 8}" ` +
      `text-anchor="middle">${escapeHtml(options.xLabel)}</text>`,
    `<text class="label" transform="translate(16 ${(top + height - bottom) / 2}) rotate(-90)" ` +
      `text-anchor="middle">${escapeHtml(options.yLabel)}</text>`,
  );
  if (plotted.length === 0) {
    out.push(
      `<text class="empty" x="${(left + width - right) / 2}" y="${(top + height - bottom) / 2}" ` +
        `text-anchor="middle">${escapeHtml(options.emptyMessage)}</text>`,
    );
  }
  for (const s of plotted) {
    const points = [...s.points].sort((a, b) => a[0] - b[0]);
    const d = points.map(([px, py], i) => `${i ? "L" : "M"}${x(px)},${y(py)}`).join("");
    out.push(
      `<path class="series" d="${d}" stroke="${escapeHtml(s.color)}"${
        s.dashed ? ' stroke-dasharray="6 4"' : ""
      } data-label="${escapeHtml(s.label)}"><title>${escapeHtml(s.label)}</title></path>`,
    );
    if (points.length <= 30) {
      for (const [px, py] of points) {
        out.push(
          `<circle class="point" cx="${x(px)}" cy="${y(py)}" r="3" fill="${escapeHtml(s.color)}"/>`,
        );
      }
    }
  }
  out.push("</svg>");
  const legend = plotted.map((s) =>
    `<li><span class="swatch${s.dashed ? " dashed" : ""}" style="border-color:${
      escapeHtml(s.color)
    }"></span>${escapeHtml(s.label)}</li>`
  );
  return `<figure>${out.join("\n")}\n<ul class="legend">${legend.join("")}</ul></figure>`;
}

function runLabel(run: RunSummary): string {
  return `${run.run.slice(0, 8)} ${run.role} ${run.topic}`;
}

function lagOf(record: MetricsRecord): number | undefined {
  if (!record.lag) return undefined;
  return Object.values(record.lag).reduce((sum, n) => sum + (Number(n) || 0), 0);
}

function charts(runs: RunSummary[]): string[] {
  const color = (i: number) => COLORS[i % COLORS.length]!;
  const consumers = runs.map((run, i) => ({ run, i })).filter(({ run }) => run.role === "consumer");
  const latency = consumers.flatMap(({ run, i }) => {
    const withLatency = run.records.filter((r) => r.latencyMs);
    return (["p99", "p50"] as const).map((p): Series => ({
      label: `${runLabel(run)} ${p}`,
      color: color(i),
      dashed: p === "p50",
      points: withLatency.map((r) => [r.elapsedSeconds, r.latencyMs![p]]),
    }));
  });
  return [
    lineChart({
      id: "throughput",
      title: "Throughput per run (messages per second since the previous record)",
      xLabel: "elapsed time (s)",
      yLabel: "messages / s",
      emptyMessage: "no runs recorded",
      series: runs.map((run, i) => ({
        label: runLabel(run),
        color: color(i),
        points: run.records.map((r) => [r.elapsedSeconds, r.intervalRate]),
      })),
    }),
    lineChart({
      id: "lag",
      title: "Consumer lag (messages not yet stored, summed over partitions)",
      xLabel: "elapsed time (s)",
      yLabel: "messages behind",
      emptyMessage: "no consumer lag recorded",
      series: consumers.map(({ run, i }) => ({
        label: runLabel(run),
        color: color(i),
        points: run.records.flatMap((r) => {
          const lag = lagOf(r);
          return lag === undefined ? [] : [[r.elapsedSeconds, lag] as [number, number]];
        }),
      })),
    }),
    lineChart({
      id: "latency",
      title: "Publish-to-row latency of consumer runs (p99 solid, p50 dashed)",
      xLabel: "elapsed time (s)",
      yLabel: "latency (ms)",
      emptyMessage: "no latency recorded",
      series: latency,
    }),
  ];
}

function countsText(counts: MetricsRecord["counts"]): string {
  const parts = Object.entries(counts ?? {}).filter(([, n]) => n);
  return parts.length ? parts.map(([k, n]) => `${k} ${formatNumber(Number(n))}`).join(", ") : "0";
}

function runsTable(runs: RunSummary[]): string {
  const head = [
    "run",
    "role",
    "topic",
    "table",
    "start (UTC)",
    "duration",
    "final counts",
    "average rate",
    "peak RSS",
    "outcome",
  ];
  const rows = runs.map((run) => {
    const outcome = run.outcome ?? "no end record";
    const status = run.outcome === undefined ? "open" : run.outcome === "ok" ? "ok" : "bad";
    const cells = [
      run.run.slice(0, 8),
      run.role,
      run.topic,
      run.table ?? "—",
      String(run.start).replace("T", " ").slice(0, 19),
      formatDuration(run.durationSeconds),
      countsText(run.counts),
      `${formatNumber(run.rate, 1)} msg/s`,
      `${formatNumber(run.peakRssMb, 1)} MiB`,
    ].map((c, i) => `<td${i === 6 ? ' class="counts"' : ""}>${escapeHtml(c)}</td>`);
    cells.push(`<td class="${status}">${escapeHtml(outcome)}</td>`);
    return `<tr>${cells.join("")}</tr>`;
  });
  return `<div class="scroll"><table><thead><tr>${
    head.map((h) => `<th>${h}</th>`).join("")
  }</tr></thead>` +
    `<tbody>${rows.join("\n")}</tbody></table></div>`;
}

/** What the report says about its input, besides the records. */
export interface ReportContext {
  /** The metrics log the records came from. */
  source: string;
  /** Lines of the log that did not parse. @default {0} */
  skipped?: number;
  /** @default {new Date()} */
  generatedAt?: Date;
}

const STYLE = `body{font:15px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;
padding:0 16px;color:#222}h1{font-size:24px;margin:0 0 4px}p.meta{color:#555;margin:0 0 16px}
pre{background:#f5f5f5;padding:10px 12px;overflow:auto}figure{margin:24px 0}
svg{width:100%;height:auto;display:block}svg text{font-family:system-ui,sans-serif}
.title{font-size:16px;font-weight:600}.tick{font-size:13px;fill:#444}.label{font-size:13px;fill:#222}
.empty{font-size:16px;fill:#777}.grid{stroke:#e4e4e4}.axis{stroke:#666}
.series{fill:none;stroke-width:2;stroke-linejoin:round;stroke-linecap:round}
.legend{list-style:none;padding:0;margin:6px 0 0 72px;display:flex;flex-wrap:wrap;gap:4px 18px}
.swatch{display:inline-block;width:22px;margin-right:6px;border-top:3px solid;vertical-align:middle}
.swatch.dashed{border-top-style:dashed}table{border-collapse:collapse;width:100%;font-size:14px}
th,td{border-bottom:1px solid #ddd;padding:5px 8px;text-align:left;vertical-align:top;
white-space:nowrap}td.counts{white-space:normal;min-width:11em}.scroll{overflow-x:auto}
td.ok{color:#1a7f37}td.bad{color:#b42318}td.open{color:#777}.notice{font-size:18px;padding:24px;background:#fff8e1}`;

/** Builds the whole report page: one HTML document that requests nothing from anywhere. */
export function buildReportHtml(records: MetricsRecord[], context: ReportContext): string {
  const runs = groupRuns(records);
  const generated = (context.generatedAt ?? new Date()).toISOString().replace("T", " ");
  const skipped = context.skipped
    ? `; ${context.skipped} line${context.skipped === 1 ? "" : "s"} that did not parse skipped`
    : "";
  const body = runs.length === 0
    ? `<p class="notice">No runs in this metrics log yet. Run the producer or the consumer ` +
      `(they append to it), then run <code>deno task report</code> again.</p>`
    : [
      `<pre class="summary">${escapeHtml(formatReportSummary(records))}</pre>`,
      ...charts(runs),
      "<h2>Runs</h2>",
      runsTable(runs),
    ].join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Ticket pipeline metrics</title><style>${STYLE}</style></head>
<body><h1>Ticket pipeline metrics</h1>
<p class="meta">${runs.length} run${runs.length === 1 ? "" : "s"} from ${
    escapeHtml(context.source)
  }${escapeHtml(skipped)}; generated ${escapeHtml(generated.slice(0, 19))} UTC</p>
${body}
</body></html>
`;
}

/** The terminal summary: runs found, per role totals, best and last rates, latency, peak RSS. */
export function formatReportSummary(records: MetricsRecord[]): string {
  const runs = groupRuns(records);
  if (runs.length === 0) return "no runs in the metrics log yet";
  const lines = [`${runs.length} run${runs.length === 1 ? "" : "s"} found`];
  for (const role of ["producer", "consumer"] as const) {
    const mine = runs.filter((r) => r.role === role);
    if (mine.length === 0) continue;
    const key = role === "producer" ? "sent" : "stored";
    const total = mine.reduce((sum, r) => sum + (r.counts[key] ?? 0), 0);
    const best = maxOf(mine.map((r) => r.rate));
    const parts = [
      `${role}: ${mine.length} run${mine.length === 1 ? "" : "s"}`,
      `${key} ${formatNumber(total)}`,
      `best ${formatNumber(best, 1)} msg/s`,
      `last ${formatNumber(mine[mine.length - 1]!.rate, 1)} msg/s`,
    ];
    const latest = mine.flatMap((r) => r.records).filter((r) => r.latencyMs)
      .sort((a, b) => String(a.ts).localeCompare(String(b.ts))).pop();
    if (latest) parts.push(`latest p99 ${formatNumber(latest.latencyMs!.p99, 1)} ms`);
    parts.push(`peak RSS ${formatNumber(maxOf(mine.map((r) => r.peakRssMb)), 1)} MiB`);
    lines.push(parts.join(", "));
  }
  return lines.join("\n");
}
