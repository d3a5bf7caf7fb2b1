/**
 * The `report` command: the metrics history to one HTML page and a summary.
 * @module
 */
import { dirname } from "node:path";
import { type CommandSpec, parseCommandLine, Problems, stringFlag } from "../cli/cli.ts";
import { AppError } from "../errors.ts";
import { DEFAULT_METRICS_LOG, readMetrics } from "../observe/metrics.ts";
import { buildReportHtml, DEFAULT_REPORT_PATH, formatReportSummary } from "../observe/report.ts";

/** `report.ts`. */
export const REPORT_SPEC: CommandSpec = {
  name: "report",
  summary: "turn the metrics log into one self-contained HTML page and print a summary",
  flags: {
    "metrics-log": {
      type: "string",
      description: "metrics history to read",
      default: DEFAULT_METRICS_LOG,
    },
    "out": { type: "string", description: "HTML page to write", default: DEFAULT_REPORT_PATH },
  },
  examples: ["deno task report", "deno task report --metrics-log bench.jsonl --out bench.html"],
};

/** `report`: writes the report page and prints the summary; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const values = parseCommandLine(REPORT_SPEC, args);
  if (!values) return 0;
  const problems = new Problems();
  const source = stringFlag(values, "metrics-log") ?? DEFAULT_METRICS_LOG;
  const out = stringFlag(values, "out") ?? DEFAULT_REPORT_PATH;
  if (!source.trim()) problems.add("--metrics-log must name a file");
  if (!out.trim()) problems.add("--out must name a file");
  problems.throwIfAny();
  let metrics;
  try {
    metrics = readMetrics(source);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new AppError(
      "NOT_FOUND",
      `metrics log ${source} not found; run the producer or consumer first, or pass --metrics-log`,
      { cause: error },
    );
  }
  const html = buildReportHtml(metrics.records, { source, skipped: metrics.skipped });
  await Deno.mkdir(dirname(out), { recursive: true });
  await Deno.writeTextFile(out, html);
  console.log(formatReportSummary(metrics.records));
  if (metrics.skipped) console.log(`${metrics.skipped} unreadable line(s) skipped`);
  console.log(`wrote ${out}`);
  return 0;
}
