/**
 * Benchmarks of the pipeline on this machine, against baselines: producer, sink, end to end (with
 * the consumer's peak memory) and publish-to-row latency. Prints a table of figures, ratios and the
 * issue's targets, and writes them to `bench/results/<timestamp>.json`. Progress goes to stderr.
 *
 * ```sh
 * deno task bench                       # full run (starts the stack if needed)
 * deno task bench:smoke                 # tiny sizes, well under a minute
 * deno run -A bench/run.ts --only sink,latency --e2e-num 200000
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { messageOf } from "../lib/errors.ts";
import { uniqueSuffix } from "../testing/testing.ts";
import { closeAllScopes, loadAverage, progress, runProcess, stackProcesses } from "./common.ts";
import { benchPeer } from "./connect_bench.ts";
import { benchEndToEnd } from "./e2e_bench.ts";
import { benchLatency } from "./latency_bench.ts";
import { benchProducer } from "./producer_bench.ts";
import {
  type BenchResults,
  defaultResultsPath,
  evaluateTargets,
  formatTable,
  type MachineInfo,
  writeResults,
} from "./report.ts";
import { benchScale } from "./scale_bench.ts";
import { benchSink } from "./sink_bench.ts";

/** Sections that `--only` can pick. */
export const SECTIONS = ["producer", "sink", "e2e", "latency", "peer", "scale"] as const;
/** One benchmark section. */
export type Section = typeof SECTIONS[number];

/** Sizes of every section. */
export interface Sizes {
  producerTickets: number;
  naiveTickets: number;
  sinkRows: number;
  rowAtATimeRows: number;
  e2eTickets: number;
  pythonTickets: number;
  latencyRate: number;
  latencySeconds: number;
  /** Tickets of the peer section (Kafka Connect + Debezium JDBC sink); `--e2e-num` sets it too. */
  peerTickets: number;
  /** The connector's batch.size. */
  peerBatchSize: number;
  /** Tickets of each scale-out drain (1, 2, 3 consumers on a 6-partition topic). */
  scaleTickets: number;
  /** Tickets of the restart figures (kill -9, SIGTERM). */
  restartTickets: number;
}

/** Sizes of a full run. */
export const FULL_SIZES: Sizes = {
  producerTickets: 1_000_000,
  naiveTickets: 5_000,
  sinkRows: 200_000,
  rowAtATimeRows: 2_000,
  e2eTickets: 1_000_000,
  pythonTickets: 10_000,
  latencyRate: 1_000,
  latencySeconds: 60,
  peerTickets: 1_000_000,
  peerBatchSize: 5_000,
  scaleTickets: 300_000,
  restartTickets: 200_000,
};

/** Sizes of `--smoke`: every code path, in well under a minute. */
export const SMOKE_SIZES: Sizes = {
  producerTickets: 5_000,
  naiveTickets: 300,
  sinkRows: 10_000,
  rowAtATimeRows: 300,
  e2eTickets: 5_000,
  pythonTickets: 300,
  latencyRate: 1_000,
  latencySeconds: 5,
  peerTickets: 3_000,
  peerBatchSize: 500,
  scaleTickets: 3_000,
  restartTickets: 20_000,
};

const USAGE = `bench/run.ts: measure the pipeline against baselines

Usage: deno run --allow-all bench/run.ts [flags]

Flags:
  --smoke               tiny sizes (checks every path; figures are not meaningful)
  --only LIST           comma-separated sections: ${SECTIONS.join(",")} (default: all;
                        memory comes with e2e)
  --e2e-num N           tickets of the end-to-end drain and of the peer section (default
                        ${FULL_SIZES.e2eTickets}, smoke ${SMOKE_SIZES.e2eTickets})
  --connect-set K=V     peer section: replace a connector property (worker.K for the worker's);
                        repeatable, for tries recorded in the tuning log
  --out FILE            results file (default bench/results/<timestamp>.json)
  --help                this text`;

/** Parsed command line of the benchmark. */
export interface BenchArgs {
  smoke: boolean;
  sections: Section[];
  sizes: Sizes;
  out?: string;
  /** `--connect-set` properties for the peer's worker and connector. */
  connectOverrides: Record<string, string>;
}

/** Parses the flags; throws with a one-line message on bad input; undefined for `--help`. */
export function parseBenchArgs(args: string[]): BenchArgs | undefined {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      smoke: { type: "boolean" },
      only: { type: "string" },
      "e2e-num": { type: "string" },
      out: { type: "string" },
      "connect-set": { type: "string", multiple: true },
      help: { type: "boolean" },
    },
  });
  if (values.help) return undefined;
  const smoke = values.smoke === true;
  const sections = values.only === undefined
    ? [...SECTIONS]
    : values.only.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = sections.filter((s) => !(SECTIONS as readonly string[]).includes(s));
  if (unknown.length > 0 || sections.length === 0) {
    throw new Error(`--only takes a list of ${SECTIONS.join(", ")}; not "${values.only}"`);
  }
  const sizes = { ...(smoke ? SMOKE_SIZES : FULL_SIZES) };
  if (values["e2e-num"] !== undefined) {
    const n = Number(values["e2e-num"]);
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new Error(`--e2e-num must be a whole number ≥ 1, not "${values["e2e-num"]}"`);
    }
    sizes.e2eTickets = n;
    sizes.peerTickets = n;
  }
  const connectOverrides: Record<string, string> = {};
  for (const pair of values["connect-set"] ?? []) {
    const at = pair.indexOf("=");
    if (at < 1) throw new Error(`--connect-set takes KEY=VALUE, not "${pair}"`);
    connectOverrides[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return { smoke, sections: sections as Section[], sizes, out: values.out, connectOverrides };
}

function machineInfo(): MachineInfo {
  let cpu = "unknown";
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? cpu;
  } catch {
    // not Linux
  }
  return {
    cores: navigator.hardwareConcurrency,
    cpu,
    memoryMiB: Math.round(Deno.systemMemoryInfo().total / 1024 / 1024),
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    loadAtStart: loadAverage(),
    note: "broker, database, clients and baselines all share this machine",
  };
}

/** The commit measured, and the files under lib/ or the scripts that differ from it. */
async function codeVersion(): Promise<BenchResults["code"]> {
  const git = async (...args: string[]) => {
    const out = await runProcess("git", args);
    return out.code === 0 ? out.stdout.trimEnd() : "";
  };
  const changed = await git(
    "status",
    "--porcelain",
    "--untracked-files=no",
    "--",
    "lib",
    "*.ts",
    ":!bench",
    ":!e2e",
  );
  return {
    commit: (await git("rev-parse", "--short", "HEAD")).trim() || "unknown",
    uncommitted: changed.split("\n").filter(Boolean).map((line) => line.slice(3)),
  };
}

/** Tries of a section: the stack is shared, and other people's fault tests restart it. */
const SECTION_ATTEMPTS = 2;

/** Restarts of the broker or database since `before`, as sentences. */
function restartsSince(before: ReturnType<typeof stackProcesses>): string[] {
  const after = stackProcesses();
  return [
    ...(after.kafka !== before.kafka ? ["the Kafka broker restarted"] : []),
    ...(after.postgres !== before.postgres ? ["PostgreSQL restarted"] : []),
  ];
}

/**
 * Runs one section. A try that fails, or during which the shared broker or database restarted,
 * is repeated once; both are noted in `disturbances`. The last error is kept in the results
 * instead of stopping the run.
 */
async function runSection(
  results: BenchResults,
  name: Section,
  work: () => Promise<void>,
): Promise<boolean> {
  const note = (text: string) => {
    progress(`${name}: ${text}`);
    (results.disturbances[name] ??= []).push(text);
  };
  for (let attempt = 1;; attempt++) {
    const last = attempt >= SECTION_ATTEMPTS;
    progress(`--- ${name}${attempt > 1 ? ` (try ${attempt})` : ""} ---`);
    const before = stackProcesses();
    let failure: string | undefined;
    try {
      await work();
    } catch (error) {
      failure = messageOf(error);
    }
    results.loadAfter[name] = loadAverage();
    const restarts = restartsSince(before);
    if (failure === undefined && restarts.length === 0) return true;
    const what = [...(failure ? [`failed: ${failure.split("\n")[0]}`] : []), ...restarts];
    note(`try ${attempt}: ${what.join("; ")}${last ? "" : "; repeating the section"}`);
    if (!last) continue;
    if (failure === undefined) return true;
    (results.sections as Record<string, unknown>)[name] = { error: failure };
    if (name === "e2e") results.sections.memory = { error: failure };
    return false;
  }
}

/** Runs the chosen sections in order; returns the results (failed sections hold their error). */
export async function runBenchmarks(options: BenchArgs): Promise<BenchResults> {
  const { sizes } = options;
  const suffix = uniqueSuffix();
  const results: BenchResults = {
    startedAt: new Date().toISOString(),
    smoke: options.smoke,
    sizes: { ...sizes },
    machine: machineInfo(),
    code: await codeVersion(),
    sections: {},
    loadAfter: {},
    disturbances: {},
    targets: [],
  };
  const work: Record<Section, () => Promise<void>> = {
    producer: async () => {
      results.sections.producer = await benchProducer(suffix, {
        tickets: sizes.producerTickets,
        naiveTickets: sizes.naiveTickets,
      });
    },
    sink: async () => {
      results.sections.sink = await benchSink(suffix, {
        rows: sizes.sinkRows,
        rowAtATimeRows: sizes.rowAtATimeRows,
      });
    },
    e2e: async () => {
      const { e2e, memory } = await benchEndToEnd(suffix, {
        tickets: sizes.e2eTickets,
        pythonTickets: sizes.pythonTickets,
      });
      results.sections.e2e = e2e;
      results.sections.memory = memory;
    },
    latency: async () => {
      results.sections.latency = await benchLatency(suffix, {
        rate: sizes.latencyRate,
        seconds: sizes.latencySeconds,
      });
    },
    peer: async () => {
      results.sections.peer = await benchPeer(suffix, {
        tickets: sizes.peerTickets,
        partitions: 3,
        batchSize: sizes.peerBatchSize,
        modes: ["insert", "upsert"],
        overrides: options.connectOverrides,
      });
    },
    scale: async () => {
      results.sections.scale = await benchScale(suffix, {
        tickets: sizes.scaleTickets,
        partitions: 6,
        members: [1, 2, 3],
        restartTickets: sizes.restartTickets,
        // tiny runs: small chunks, so the signals land while the member is still writing
        restartBatchSize: options.smoke ? 500 : undefined,
      });
    },
  };
  for (const name of SECTIONS) {
    if (options.sections.includes(name)) await runSection(results, name, work[name]);
  }
  results.finishedAt = new Date().toISOString();
  results.machine.loadAtEnd = loadAverage();
  results.targets = evaluateTargets(results.sections);
  return results;
}

/** Runs the benchmark; returns the exit code (1 when a section failed). */
export async function main(args: string[]): Promise<number> {
  let options: BenchArgs | undefined;
  try {
    options = parseBenchArgs(args);
  } catch (error) {
    console.error(`error: ${messageOf(error)}`);
    return 2;
  }
  if (!options) {
    console.log(USAGE);
    return 0;
  }
  const started = new Date();
  const onInterrupt = () => {
    progress("interrupted: removing what this run created");
    closeAllScopes().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    const results = await runBenchmarks(options);
    const path = await writeResults(results, options.out ?? defaultResultsPath(started));
    console.log(formatTable(results));
    progress(`results written to ${path}`);
    return Object.values(results.sections).some((s) => s && "error" in s) ? 1 : 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
