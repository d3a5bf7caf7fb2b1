/**
 * The `report` command: the metrics history to one HTML page and a summary.
 * @module
 */
import { dirname } from "node:path";
import { defineCommand, parseCommandLine } from "../cli/cli.ts";
import { AppError } from "../errors.ts";
import { METRICS_FLAGS, readMetrics } from "../observe/metrics.ts";
import {
  buildReportHtml,
  DEFAULT_LAST_RUNS,
  DEFAULT_REPORT_PATH,
  formatReportSummary,
  type RunSelection,
} from "../observe/report.ts";

/** Refuses a blank file name. */
function checkFileName(flag: string): (path: string) => void {
  return (path) => {
    if (!path.trim()) throw new AppError("USAGE", `--${flag} must name a file`);
  };
}

/** `report.ts`. */
export const REPORT_SPEC = defineCommand({
  name: "report",
  summary: "turn the metrics log into one self-contained HTML page and print a summary",
  flags: {
    "metrics-log": {
      ...METRICS_FLAGS["metrics-log"],
      description: "metrics history to read",
      check: checkFileName("metrics-log"),
    },
    "out": {
      type: "string",
      description: "HTML page to write",
      default: DEFAULT_REPORT_PATH,
      check: checkFileName("out"),
    },
    "last": {
      type: "integer",
      description: "show the newest N runs (of those --topic and --run keep)",
      default: DEFAULT_LAST_RUNS,
      min: 1,
      max: 1_000_000,
    },
    "topic": { type: "string", description: "only runs of this topic" },
    "run": {
      type: "string",
      description: "only these runs: ids or id prefixes as the table shows them, comma-separated",
    },
  },
  examples: [
    "deno task report",
    "deno task report --last 50 --topic movie_app",
    "deno task report --run 1a2b3c4d,5e6f7a8b",
    "deno task report --metrics-log bench.jsonl --out bench.html",
  ],
});

/** `report`: writes the report page and prints the summary; returns the exit code. */
export async function run(args: string[]): Promise<number> {
  const values = parseCommandLine(REPORT_SPEC, args);
  if (!values) return 0;
  const source = values["metrics-log"];
  const out = values.out;
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
  const selection: RunSelection = { last: values.last, topic: values.topic, run: values.run };
  const html = buildReportHtml(metrics.records, { source, skipped: metrics.skipped, selection });
  await Deno.mkdir(dirname(out), { recursive: true });
  await Deno.writeTextFile(out, html);
  console.log(formatReportSummary(metrics.records, selection));
  if (metrics.skipped) console.log(`${metrics.skipped} unreadable line(s) skipped`);
  console.log(`wrote ${out}`);
  return 0;
}
