/**
 * The metrics report: turns the metrics history (see `metrics.ts`) into one self-contained HTML
 * page and a short text summary. It shows the last few runs by default (`--last`, `--topic`,
 * `--run` pick others), a table of runs, small multiples (one panel per run, so 50+ runs stay
 * legible; see `report_charts.ts`) and dead letters by reason.
 * @module
 */
import type { MetricsRecord } from "./metrics.ts";
import {
  barChart,
  escapeHtml,
  formatNumber,
  maxOf,
  type Panel,
  smallMultiples,
} from "./report_charts.ts";

export { escapeHtml, formatNumber, niceTicks } from "./report_charts.ts";

/** Default HTML page written by `deno task report`. */
export const DEFAULT_REPORT_PATH = "logs/report.html";
/** Runs shown when `--last` is not given. */
export const DEFAULT_LAST_RUNS = 10;

/**
 * A metrics record as the report reads it. The consumer's records carry its dead letters by
 * reason (`deadLettersByReason`); records of older runs do not, and the report then splits their
 * dead letters into DB_REJECTED (`counts.rejected`) and "reason not recorded".
 */
export type ReportRecord = MetricsRecord;

/** The dead letters of a run whose records do not say their reasons. */
export const UNRECORDED_REASON = "reason not recorded";

/** The records of one producer or consumer run, with the figures the report shows. */
export interface RunSummary {
  run: string;
  role: MetricsRecord["role"];
  topic: string;
  table?: string;
  /** Records in time order. */
  records: ReportRecord[];
  /** ISO time of the first record. */
  start: string;
  durationSeconds: number;
  /** Counts of the last record. */
  counts: MetricsRecord["counts"];
  /** Messages per second over the whole run (the last record's `rate`). */
  rate: number;
  /** Highest rate between two records. */
  peakRate: number;
  /** Worst publish-to-row p99 of any interval, in ms; undefined without latency records. */
  worstP99Ms?: number;
  peakRssMb: number;
  /** Dead letters by reason, as of the last record. */
  deadLettersByReason: Record<string, number>;
  /** The `end` record's outcome; undefined while the run has no `end`. */
  outcome?: string;
}

/** Which runs the report shows. */
export interface RunSelection {
  /** Newest runs kept after the other filters. @default {10} */
  last?: number;
  /** Only runs of this topic. */
  topic?: string;
  /** Only runs whose id starts with one of these comma-separated ids (as the table shows them). */
  run?: string;
}

/** The runs a selection keeps, and how many there were. */
export interface SelectedRuns {
  runs: RunSummary[];
  /** Runs that passed `topic` and `run` (before `last`). */
  matched: number;
  /** Runs in the log. */
  total: number;
  /** The topics of the log, for the message when nothing matches. */
  topics: string[];
}

function reasonsOf(list: ReportRecord[], counts: MetricsRecord["counts"]) {
  const recorded = list.findLast((r) => r.deadLettersByReason)?.deadLettersByReason;
  if (recorded) return { ...recorded };
  const total = counts.deadLetters ?? 0;
  const rejected = Math.min(total, counts.rejected ?? 0);
  const out: Record<string, number> = {};
  if (rejected) out.DB_REJECTED = rejected;
  if (total - rejected > 0) out[UNRECORDED_REASON] = total - rejected;
  return out;
}

/** Groups records by run id; runs in start order, each run's records in time order. */
export function groupRuns(records: ReportRecord[]): RunSummary[] {
  const byRun = new Map<string, ReportRecord[]>();
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
    const counts = last.counts ?? {};
    const p99s = list.map((r) => r.latencyMs?.p99);
    return {
      run: first.run,
      role: first.role,
      topic: first.topic,
      table: list.find((r) => r.table)?.table,
      records: list,
      start: String(first.ts ?? ""),
      durationSeconds: last.elapsedSeconds ?? 0,
      counts,
      rate: last.rate ?? 0,
      peakRate: maxOf(list.map((r) => r.intervalRate)),
      worstP99Ms: p99s.some((v) => typeof v === "number") ? maxOf(p99s) : undefined,
      peakRssMb: maxOf(list.map((r) => r.peakRssMb)),
      deadLettersByReason: reasonsOf(list, counts),
      outcome: list.find((r) => r.event === "end")?.outcome,
    };
  });
  return runs.sort((a, b) => a.start.localeCompare(b.start));
}

/** Applies a selection: `topic` and `run` filter, then the newest `last` runs stay, in start order. */
export function selectRuns(all: RunSummary[], selection: RunSelection = {}): SelectedRuns {
  const ids = (selection.run ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  const matching = all.filter((run) =>
    (selection.topic === undefined || run.topic === selection.topic) &&
    (ids.length === 0 || ids.some((id) => run.run.startsWith(id)))
  );
  const last = selection.last ?? DEFAULT_LAST_RUNS;
  return {
    runs: matching.slice(Math.max(0, matching.length - last)),
    matched: matching.length,
    total: all.length,
    topics: [...new Set(all.map((r) => r.topic))].sort(),
  };
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${formatNumber(seconds, 1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m < 60 ? `${m}m ${String(s).padStart(2, "0")}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
}

const ROLE_COLOR = { producer: "#1f77b4", consumer: "#2ca02c" } as const;
const LAG_COLOR = "#d62728";
const P99_COLOR = "#9467bd";

function panelOf(run: RunSummary, i: number, series: Panel["series"]): Panel {
  return {
    run: run.run,
    title: `#${i + 1} ${run.role} ${run.run.slice(0, 8)}`,
    subtitle: run.topic,
    series,
    failed: run.outcome !== undefined && run.outcome !== "ok",
  };
}

function lagOf(record: MetricsRecord): number | undefined {
  if (!record.lag) return undefined;
  return Object.values(record.lag).reduce((sum, n) => sum + (Number(n) || 0), 0);
}

function charts(runs: RunSummary[]): string[] {
  const numbered = runs.map((run, i) => ({ run, i }));
  const consumers = numbered.filter(({ run }) => run.role === "consumer");
  return [
    "<h2>Average rate per run</h2>",
    barChart(
      "rates",
      "numbered as in the table; producers blue, consumers green",
      "msg/s",
      numbered.map(({ run, i }) => ({
        label: `#${i + 1}`,
        value: run.rate,
        color: ROLE_COLOR[run.role] ?? "#777",
        title: `#${i + 1} ${run.role} ${run.topic}: ${formatNumber(run.rate, 1)} msg/s`,
      })),
    ),
    "<h2>Throughput per run</h2>",
    smallMultiples({
      id: "throughput",
      yUnit: "msg/s",
      emptyMessage: "no runs recorded",
      legend: [
        { label: "producer: messages sent per second", color: ROLE_COLOR.producer },
        { label: "consumer: messages stored per second", color: ROLE_COLOR.consumer },
      ],
      panels: numbered.map(({ run, i }) =>
        panelOf(run, i, [{
          label: `${run.role} msg/s`,
          color: ROLE_COLOR[run.role] ?? "#777",
          points: run.records.map((r) => [r.elapsedSeconds, r.intervalRate]),
        }])
      ),
    }),
    "<h2>Consumer lag per run</h2>",
    smallMultiples({
      id: "lag",
      yUnit: "messages",
      emptyMessage: "no consumer lag recorded",
      legend: [{ label: "messages not yet stored, summed over partitions", color: LAG_COLOR }],
      panels: consumers.map(({ run, i }) =>
        panelOf(run, i, [{
          label: "lag",
          color: LAG_COLOR,
          points: run.records.flatMap((r) => {
            const lag = lagOf(r);
            return lag === undefined ? [] : [[r.elapsedSeconds, lag] as [number, number]];
          }),
        }])
      ),
    }),
    "<h2>Publish-to-row latency per consumer run</h2>",
    smallMultiples({
      id: "latency",
      yUnit: "ms",
      emptyMessage: "no latency recorded",
      legend: [
        { label: "p99", color: P99_COLOR },
        { label: "p50", color: P99_COLOR, dashed: true },
      ],
      panels: consumers.map(({ run, i }) => {
        const withLatency = run.records.filter((r) => r.latencyMs);
        return panelOf(
          run,
          i,
          (["p99", "p50"] as const).map((p) => ({
            label: p,
            color: P99_COLOR,
            dashed: p === "p50",
            points: withLatency.map((r) => [r.elapsedSeconds, r.latencyMs![p]]),
          })),
        );
      }),
    }),
  ];
}

function countCell(value: number | undefined): string {
  return value === undefined ? "—" : formatNumber(value);
}

function runsTable(runs: RunSummary[]): string {
  const head = [
    "#",
    "run",
    "role",
    "topic → table",
    "start (UTC)",
    "time",
    "outcome",
    "sent / read",
    "stored",
    "cancelled",
    "dupl.",
    "dead letters",
    "avg msg/s",
    "peak msg/s",
    "worst p99",
    "peak RSS",
  ];
  const rows = runs.map((run, i) => {
    const outcome = run.outcome ?? "no end record";
    const status = run.outcome === undefined ? "open" : run.outcome === "ok" ? "ok" : "bad";
    const c = run.counts;
    const cells = [
      `#${i + 1}`,
      run.run.slice(0, 8),
      run.role,
      run.table ? `${run.topic} → ${run.table}` : run.topic,
      String(run.start).replace("T", " ").slice(5, 16),
      formatDuration(run.durationSeconds),
    ].map((text, k) =>
      k === 4
        ? `<td title="${escapeHtml(run.start)}">${escapeHtml(text)}</td>`
        : `<td>${escapeHtml(text)}</td>`
    );
    cells.push(`<td class="${status}" title="${escapeHtml(outcome)}">${escapeHtml(outcome)}</td>`);
    cells.push(
      ...[
        countCell(run.role === "producer" ? c.sent : c.received),
        countCell(c.stored),
        countCell(run.role === "producer" ? undefined : c.cancelled),
        countCell(c.duplicates),
        countCell(c.deadLetters),
        formatNumber(run.rate, 1),
        formatNumber(run.peakRate, 1),
        run.worstP99Ms === undefined ? "—" : `${formatNumber(run.worstP99Ms, 0)} ms`,
        `${formatNumber(run.peakRssMb, 0)} MiB`,
      ].map((text) => `<td class="num">${escapeHtml(text)}</td>`),
    );
    return `<tr data-run="${escapeHtml(run.run)}">${cells.join("")}</tr>`;
  });
  return `<div class="scroll"><table class="runs"><thead><tr>${
    head.map((h) => `<th>${h}</th>`).join("")
  }</tr></thead><tbody>${rows.join("\n")}</tbody></table></div>`;
}

/**
 * Dead letters by reason over `runs`: reason, letters, runs with any; largest first, the letters
 * whose reason was not recorded last.
 */
export function deadLettersByReason(
  runs: RunSummary[],
): Array<{ reason: string; letters: number; runs: number }> {
  const byReason = new Map<string, { letters: number; runs: number }>();
  for (const run of runs) {
    for (const [reason, n] of Object.entries(run.deadLettersByReason)) {
      if (!(Number(n) > 0)) continue;
      const entry = byReason.get(reason) ?? { letters: 0, runs: 0 };
      entry.letters += Number(n);
      entry.runs += 1;
      byReason.set(reason, entry);
    }
  }
  return [...byReason].map(([reason, e]) => ({ reason, ...e }))
    .sort((a, b) =>
      Number(a.reason === UNRECORDED_REASON) - Number(b.reason === UNRECORDED_REASON) ||
      b.letters - a.letters || a.reason.localeCompare(b.reason)
    );
}

function deadLettersSection(runs: RunSummary[]): string {
  const rows = deadLettersByReason(runs);
  if (rows.length === 0) {
    return `<p class="none" data-empty="dead-letters">No dead letters in these runs.</p>`;
  }
  const top = maxOf(rows.map((r) => r.letters));
  const body = rows.map((r) =>
    `<tr data-reason="${escapeHtml(r.reason)}"><td>${escapeHtml(r.reason)}</td>` +
    `<td class="num">${formatNumber(r.letters)}</td><td class="num">${r.runs}</td>` +
    `<td class="barcell"><span class="hbar" style="width:${
      ((r.letters / top) * 100).toFixed(1)
    }%"></span></td></tr>`
  ).join("\n");
  return `<table class="reasons"><thead><tr><th>reason</th><th>dead letters</th>` +
    `<th>runs</th><th></th></tr></thead><tbody>${body}</tbody></table>`;
}

/** What the report says about its input, besides the records. */
export interface ReportContext {
  /** The metrics log the records came from. */
  source: string;
  /** Lines of the log that did not parse. @default {0} */
  skipped?: number;
  /** @default {new Date()} */
  generatedAt?: Date;
  /** Which runs to show. @default {the last 10} */
  selection?: RunSelection;
}

const STYLE = `body{font:15px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;
padding:0 16px;color:#222}h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 6px}
p.meta{color:#555;margin:0 0 16px}pre{background:#f5f5f5;padding:10px 12px;overflow:auto}
svg{width:100%;height:auto;display:block}svg text{font-family:system-ui,sans-serif}
.title{font-size:15px;fill:#555}.tick{font-size:11px;fill:#444}.unit{fill:#777}
.ptitle{font-size:12.5px;font-weight:600;fill:#222}.psub{font-size:11.5px;fill:#666}
.empty{font-size:12px;fill:#999}line.grid{stroke:#e4e4e4}.axis{stroke:#666}
.series{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}
div.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:10px}
svg.panel{border:1px solid #e4e4e4;border-radius:4px;background:#fff}svg.panel.failed{border-color:#b42318}
.legend{list-style:none;padding:0;margin:4px 0 8px;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:14px}
.legend .scale{color:#666}.swatch{display:inline-block;width:22px;margin-right:6px;border-top:3px solid;
vertical-align:middle}.swatch.dashed{border-top-style:dashed}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #ddd;
padding:3px 5px;text-align:left;vertical-align:top;white-space:nowrap}th{position:sticky;top:0;background:#fff}
td.num{text-align:right;font-variant-numeric:tabular-nums}.scroll{overflow-x:auto}
td.ok{color:#1a7f37}td.bad{color:#b42318;max-width:12em;overflow:hidden;text-overflow:ellipsis}
table.runs th{white-space:normal;vertical-align:bottom}table.runs{font-size:12.5px}
table.runs th,table.runs td{padding:3px 4px}
td.open{color:#777}table.reasons{width:auto;min-width:50%}td.barcell{width:40%;min-width:200px}
.hbar{display:inline-block;height:12px;background:#b42318;vertical-align:middle}
.notice{font-size:18px;padding:24px;background:#fff8e1}`;

function describeSelection(chosen: SelectedRuns, selection: RunSelection): string {
  const filters = [
    selection.topic !== undefined ? `topic ${selection.topic}` : "",
    selection.run ? `run ${selection.run}` : "",
  ].filter(Boolean).join(", ");
  const of = filters ? `${chosen.matched} matching ${filters}` : `${chosen.total}`;
  return chosen.runs.length < chosen.matched
    ? `the last ${chosen.runs.length} of ${of} runs (--last N shows more)`
    : `${chosen.runs.length} of ${of} run${chosen.matched === 1 ? "" : "s"}`;
}

/** Builds the whole report page: one HTML document that requests nothing from anywhere. */
export function buildReportHtml(records: ReportRecord[], context: ReportContext): string {
  const selection = context.selection ?? {};
  const chosen = selectRuns(groupRuns(records), selection);
  const runs = chosen.runs;
  const generated = (context.generatedAt ?? new Date()).toISOString().replace("T", " ");
  const skipped = context.skipped
    ? `; ${context.skipped} line${context.skipped === 1 ? "" : "s"} that did not parse skipped`
    : "";
  const body = chosen.total === 0
    ? `<p class="notice">No runs in this metrics log yet. Run the producer or the consumer ` +
      `(they append to it), then run <code>deno task report</code> again.</p>`
    : runs.length === 0
    ? `<p class="notice">No run matches ${
      escapeHtml(describeSelection(chosen, selection))
    }. Topics in the log: ${escapeHtml(chosen.topics.join(", "))}.</p>`
    : [
      `<pre class="summary">${escapeHtml(formatRunsSummary(runs))}</pre>`,
      "<h2>Runs</h2>",
      runsTable(runs),
      "<h2>Dead letters by reason</h2>",
      deadLettersSection(runs),
      ...charts(runs),
    ].join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Ticket pipeline metrics</title><style>${STYLE}</style></head>
<body><h1>Ticket pipeline metrics</h1>
<p class="meta">Showing ${escapeHtml(describeSelection(chosen, selection))} from ${
    escapeHtml(context.source)
  }${escapeHtml(skipped)}; generated ${escapeHtml(generated.slice(0, 19))} UTC</p>
${body}
</body></html>
`;
}

function formatRunsSummary(runs: RunSummary[]): string {
  const lines = [`${runs.length} run${runs.length === 1 ? "" : "s"} found`];
  for (const role of ["producer", "consumer"] as const) {
    const mine = runs.filter((r) => r.role === role);
    if (mine.length === 0) continue;
    const key = role === "producer" ? "sent" : "stored";
    const total = mine.reduce((sum, r) => sum + (r.counts[key] ?? 0), 0);
    const parts = [
      `${role}: ${mine.length} run${mine.length === 1 ? "" : "s"}`,
      `${key} ${formatNumber(total)}`,
    ];
    const cancelled = mine.reduce((sum, r) => sum + (r.counts.cancelled ?? 0), 0);
    if (cancelled > 0) parts.push(`cancelled ${formatNumber(cancelled)}`);
    parts.push(
      `best ${formatNumber(maxOf(mine.map((r) => r.rate)), 1)} msg/s`,
      `last ${formatNumber(mine[mine.length - 1]!.rate, 1)} msg/s`,
    );
    const latest = mine.flatMap((r) => r.records).filter((r) => r.latencyMs)
      .sort((a, b) => String(a.ts).localeCompare(String(b.ts))).pop();
    if (latest) parts.push(`latest p99 ${formatNumber(latest.latencyMs!.p99, 1)} ms`);
    parts.push(`peak RSS ${formatNumber(maxOf(mine.map((r) => r.peakRssMb)), 1)} MiB`);
    lines.push(parts.join(", "));
  }
  const letters = deadLettersByReason(runs);
  if (letters.length) {
    lines.push(
      `dead letters: ${letters.map((l) => `${l.reason} ${formatNumber(l.letters)}`).join(", ")}`,
    );
  }
  return lines.join("\n");
}

/**
 * The terminal summary of the selected runs (as the page: the last 10 by default): runs found,
 * per role totals, best and last rates, latency, peak RSS, dead letters by reason.
 */
export function formatReportSummary(records: ReportRecord[], selection: RunSelection = {}): string {
  const chosen = selectRuns(groupRuns(records), selection);
  if (chosen.total === 0) return "no runs in the metrics log yet";
  if (chosen.runs.length === 0) {
    return `no run matches the selection (${chosen.total} runs in the log; topics: ${
      chosen.topics.join(", ")
    })`;
  }
  const shown = chosen.runs.length < chosen.total
    ? `showing ${chosen.runs.length} of ${chosen.total} runs\n`
    : "";
  return shown + formatRunsSummary(chosen.runs);
}
