/**
 * The benchmark's results: their JSON shape, the issue's targets (reported as met or missed, never
 * asserted), the printed table and the results file.
 * @module
 */
import { dirname, join } from "node:path";
import { ratio, ROOT } from "./common.ts";
import type { PeerResults } from "./connect_bench.ts";
import type { EndToEndResults, MemoryResults } from "./e2e_bench.ts";
import type { LatencyResults } from "./latency_bench.ts";
import type { ProducerResults } from "./producer_bench.ts";
import type { ScaleResults } from "./scale_bench.ts";
import type { RowsFigure, SinkResults } from "./sink_bench.ts";
import { describeDrainCpu, microsPerTicket, microsText } from "./cpu.ts";

/** A section that failed: its error instead of figures. */
export interface SectionError {
  error: string;
}

/** Where and when the run happened. */
export interface MachineInfo {
  cores: number;
  cpu: string;
  memoryMiB: number;
  os: string;
  deno: string;
  /** Load averages (1, 5, 15 min) when the run started and ended. */
  loadAtStart: number[];
  loadAtEnd?: number[];
  note: string;
}

/** One of the issue's targets and how this run did against it. */
export interface TargetResult {
  id: string;
  description: string;
  value: number | null;
  /** `>=` a minimum, `<` a maximum. */
  comparison: ">=" | "<";
  threshold: number;
  /** Unit of `value` and `threshold`: "x" for a ratio. */
  unit: "x" | "tickets/s" | "ms" | "MB";
  /** null when the figure is missing (section skipped or failed). */
  met: boolean | null;
}

/** Everything one run measured; written to `bench/results/<timestamp>.json`. */
export interface BenchResults {
  startedAt: string;
  finishedAt?: string;
  smoke: boolean;
  sizes: Record<string, unknown>;
  machine: MachineInfo;
  /** Git commit of the code measured, and files of the pipeline changed since (not committed). */
  code: { commit: string; uncommitted: string[] };
  sections: {
    producer?: ProducerResults | SectionError;
    sink?: SinkResults | SectionError;
    e2e?: EndToEndResults | SectionError;
    latency?: LatencyResults | SectionError;
    memory?: MemoryResults | SectionError;
    peer?: PeerResults | SectionError;
    scale?: ScaleResults | SectionError;
  };
  /** Load averages right after each section. */
  loadAfter: Record<string, number[]>;
  /** Per section: failed tries and restarts of the shared broker or database seen during it. */
  disturbances: Record<string, string[]>;
  targets: TargetResult[];
}

/** Section results without errors, for reading figures. */
function ok<T extends object>(section: T | SectionError | undefined): T | undefined {
  return section && !("error" in section) ? section as T : undefined;
}

/** Evaluates the issue's targets against the figures (no asserts, no thresholds on the run). */
export function evaluateTargets(sections: BenchResults["sections"]): TargetResult[] {
  const producer = ok(sections.producer);
  const sink = ok(sections.sink);
  const e2e = ok(sections.e2e);
  const latency = ok(sections.latency);
  const memory = ok(sections.memory);
  const peer = ok(sections.peer);
  const target = (
    id: string,
    description: string,
    value: number | null | undefined,
    comparison: ">=" | "<",
    threshold: number,
    unit: TargetResult["unit"] = "x",
  ): TargetResult => ({
    id,
    description,
    value: value ?? null,
    comparison,
    threshold,
    unit,
    met: value === null || value === undefined
      ? null
      : comparison === ">="
      ? value >= threshold
      : value < threshold,
  });
  return [
    target("producer.vsNaive", "producer ≥ 20x naive", producer?.ratios.vsNaive, ">=", 20),
    // issue 14 raised these two from 0.5x and 0.3x
    target(
      "producer.vsProducerPerformance",
      "producer ≥ 0.9x ProducerPerformance",
      producer?.ratios.vsProducerPerformance,
      ">=",
      0.9,
    ),
    target("sink.vsRowAtATime", "sink ≥ 30x row-at-a-time", sink?.ratios.vsRowAtATime, ">=", 30),
    target("sink.vsCopy", "sink, 1 connection, ≥ 1.0x psql \\copy", sink?.ratios.vsCopy, ">=", 1),
    target(
      "e2e.storedPerSecond",
      "end to end ≥ 50,000 tickets/s stored",
      e2e?.consume.ticketsPerSecond,
      ">=",
      50_000,
      "tickets/s",
    ),
    target("e2e.vsPython", "end to end ≥ 20x Python baseline", e2e?.ratios.vsPython, ">=", 20),
    target(
      "e2e.vsCopy",
      "end to end ≥ 0.9x psql \\copy of the same rows at the same size",
      e2e?.ratios.vsCopy,
      ">=",
      0.9,
    ),
    target("latency.p99", "p99 < 250 ms at 1,000/s", latency?.p99Ms, "<", 250, "ms"),
    target(
      "memory.consumerPeakRss",
      "consumer RSS < 300 MB",
      memory ? memory.consumerPeakRssMiB * 1.048576 : undefined,
      "<",
      300,
      "MB",
    ),
    target(
      "peer.vsDebezium",
      "end to end ≥ 2x the Debezium JDBC sink (its faster mode)",
      peer?.ratios.vsBest,
      ">=",
      2,
    ),
    target(
      "peer.vsDebeziumFloor",
      "end to end ≥ 1.5x the Debezium JDBC sink (floor)",
      peer?.ratios.vsBest,
      ">=",
      1.5,
    ),
  ];
}

const int = (x: number) => Math.round(x).toLocaleString("en-US");
const times = (x: number | null | undefined) =>
  x === null || x === undefined ? "-" : `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}x`;

type Row = [section: string, figure: string, value: string, ratio: string, target: string];

function status(targets: TargetResult[], id: string): string {
  const t = targets.find((x) => x.id === id);
  if (!t) return "";
  const word = t.met === null ? "n/a" : t.met ? "met" : "MISSED";
  const unit = t.unit === "x" ? "x" : ` ${t.unit}`;
  return `${t.comparison === ">=" ? "≥" : "<"} ${
    t.threshold.toLocaleString("en-US")
  }${unit}: ${word}`;
}

function producerRows(p: ProducerResults, targets: TargetResult[]): Row[] {
  return [
    [
      "producer",
      `runProducer, defaults, ${int(p.ours.tickets)} tickets (${p.listener})`,
      `${int(p.ours.ticketsPerSecond)} tickets/s`,
      "",
      "",
    ],
    [
      "",
      `naive: await send() per message, ${int(p.naive.tickets)} tickets`,
      `${int(p.naive.ticketsPerSecond)} tickets/s`,
      `ours ${times(p.ratios.vsNaive)}`,
      status(targets, "producer.vsNaive"),
    ],
    [
      "",
      `ProducerPerformance (Java), ${int(p.producerPerformance.records)} x ${p.recordBytes} B`,
      `${int(p.producerPerformance.recordsPerSecond)} records/s`,
      `ours ${times(p.ratios.vsProducerPerformance)}`,
      status(targets, "producer.vsProducerPerformance"),
    ],
  ];
}

const refusedNote = (refused: number | undefined) => refused ? ` (${int(refused)} SEAT_TAKEN)` : "";

/** `2 (31.5k, 40.8k)`: how many runs, and their tickets/s. */
const runsNote = (rates: number[]) =>
  `${rates.length} (${rates.map((r) => `${(r / 1000).toFixed(1)}k`).join(", ")})`;

/** `tickets/s (rows/s)` of a sink figure. */
const sinkRate = (f: RowsFigure) =>
  `${int(f.ticketsPerSecond)} tickets/s = ${int(f.rowsPerSecond)} rows/s`;

function sinkRows(s: SinkResults, targets: TargetResult[]): Row[] {
  return [
    [
      "sink",
      `writeBatch, ${int(s.batchSize)}/batch, 1 connection, ${int(s.ours.tickets)} tickets${
        refusedNote(s.ours.refused)
      }, fastest of ${runsNote(s.rounds.ours)}`,
      sinkRate(s.ours),
      "",
      "",
    ],
    [
      "",
      `writeBatch, ${s.oursParallel.partitions} partitions in parallel (as the consumer)${
        refusedNote(s.oursParallel.refused)
      }`,
      sinkRate(s.oursParallel),
      `${times(s.ratios.parallelVsCopy)} of \\copy`,
      "",
    ],
    [
      "",
      `one autocommitted INSERT per row, ${int(s.rowAtATime.tickets)} tickets`,
      sinkRate(s.rowAtATime),
      `ours ${times(s.ratios.vsRowAtATime)}`,
      status(targets, "sink.vsRowAtATime"),
    ],
    [
      "",
      `psql \\copy from CSV, ${int(s.copy.tickets)} tickets, fastest of ${runsNote(s.rounds.copy)}`,
      sinkRate(s.copy),
      `ours ${times(s.ratios.vsCopy)}`,
      status(targets, "sink.vsCopy"),
    ],
    [
      "",
      `${s.remote.roundTripMs} ms round trip (a proxy): writeBatch 1 connection / \\copy`,
      `${sinkRate(s.remote.ours)} / ${int(s.remote.copy.ticketsPerSecond)} tickets/s`,
      `ours ${times(s.remote.vsCopy)}`,
      "",
    ],
    [
      "",
      "PostgreSQL backend CPU a ticket: writeBatch 1 connection / 3 in parallel / \\copy",
      `${cpuMicros(s.ours)} / ${cpuMicros(s.oursParallel)} / ${cpuMicros(s.copy)} µs`,
      "",
      "",
    ],
    [
      "",
      "(every sink row writes the same rows per ticket: ticket, seats, transaction)",
      "",
      "",
      "",
    ],
  ];
}

/** A sink figure's server CPU in µs a ticket, or "?" where /proc could not be read. */
const cpuMicros = (f: RowsFigure) => microsText(microsPerTicket(f.serverCpuSeconds, f.tickets));

function e2eRows(e: EndToEndResults, targets: TargetResult[]): Row[] {
  const python = "error" in e.python
    ? ["Python baseline", `not run: ${e.python.error.split("\n")[0]}`]
    : [
      `Python baseline (${e.python.client} + psycopg2), ${int(e.python.tickets)}`,
      `${int(e.python.ticketsPerSecond)} tickets/s`,
    ];
  return [
    [
      "e2e",
      `produce ${int(e.tickets)} tickets`,
      `${int(e.produce.ticketsPerSecond)} tickets/s`,
      "",
      "",
    ],
    [
      "",
      "consume (consumer.ts subprocess) into PostgreSQL",
      `${int(e.consume.ticketsPerSecond)} tickets/s`,
      "",
      status(targets, "e2e.storedPerSecond"),
    ],
    [
      "",
      `psql \\copy of the drained rows into fresh tables, 1 connection`,
      `${int(e.copy.ticketsPerSecond)} tickets/s = ${int(e.copy.rowsPerSecond)} rows/s`,
      `ours ${times(e.ratios.vsCopy)}`,
      status(targets, "e2e.vsCopy"),
    ],
    ...(e.consume.cpu
      ? [["", "where the CPU went", describeDrainCpu(e.consume.cpu), "", ""] satisfies Row]
      : []),
    [
      "",
      "every ticket exactly once (distinct rows + refused = N)",
      `${e.consume.exact ? "yes" : "NO"}: ${int(e.consume.distinctRows)} + ${
        int(e.consume.refused)
      } SEAT_TAKEN of ${int(e.tickets)}`,
      "",
      "",
    ],
    [
      "",
      python[0]!,
      python[1]!,
      `ours ${times(e.ratios.vsPython)}`,
      status(targets, "e2e.vsPython"),
    ],
  ];
}

function latencyRows(l: LatencyResults, targets: TargetResult[]): Row[] {
  return [[
    "latency",
    `publish-to-row p50 / p99 / max, ${int(l.rate)}/s for ${l.seconds} s`,
    `${l.p50Ms} / ${l.p99Ms} / ${l.maxMs} ms`,
    "",
    status(targets, "latency.p99"),
  ]];
}

function memoryRows(m: MemoryResults, targets: TargetResult[]): Row[] {
  return [[
    "memory",
    `consumer peak RSS (VmHWM), ${int(m.tickets)}-ticket drain`,
    `${m.consumerPeakRssMiB.toFixed(0)} MiB (${(m.consumerPeakRssMiB * 1.048576).toFixed(0)} MB)`,
    "",
    status(targets, "memory.consumerPeakRss"),
  ]];
}

function peerRows(p: PeerResults, targets: TargetResult[]): Row[] {
  const o = p.ours;
  const rows: Row[] = [[
    "peer",
    `ours: consumer.ts, ${int(p.tickets)} tickets, ${p.partitions} partitions, exactly once${
      o.exact ? "" : " (NOT EXACT)"
    }`,
    `${int(o.ticketsPerSecond)} tickets/s = ${int(o.rowsPerSecond)} rows/s (${
      o.rowsPerTicket.toFixed(1)
    } rows/ticket)`,
    "",
    "",
  ]];
  for (const r of p.runs) {
    const best = r.ticketsPerSecond === Math.max(...p.runs.map((x) => x.ticketsPerSecond));
    rows.push([
      "",
      `${p.connector} (${p.worker}), ${r.mode}, ${r.tasks} tasks, batch.size ${
        int(r.batchSize)
      }, first row to last${r.exact ? "" : " (NOT EXACT)"}`,
      `${int(r.ticketsPerSecond)} tickets/s = ${int(r.rowsPerSecond)} rows/s`,
      `ours ${times(ratio(o.ticketsPerSecond, r.ticketsPerSecond))}`,
      best ? status(targets, "peer.vsDebezium") : "",
    ], [
      "",
      `  ${r.mode}: worker start / first row / from the spawn`,
      `${r.workerStartSeconds?.toFixed(1) ?? "?"} s / ${r.firstRowSeconds.toFixed(1)} s / ${
        int(r.ticketsPerSecondWithStart)
      } tickets/s`,
      "",
      best ? status(targets, "peer.vsDebeziumFloor") : "",
    ]);
  }
  return rows;
}

function scaleRows(s: ScaleResults): Row[] {
  const rows: Row[] = s.runs.flatMap((r, i): Row[] => [
    [
      i === 0 ? "scale" : "",
      `${r.members} consumer process${
        r.members > 1 ? "es" : ""
      }, one group, ${s.partitions} partitions, ${int(r.tickets)} tickets${
        r.exact ? ", exact" : " (NOT EXACT)"
      }`,
      `${int(r.ticketsPerSecond)} tickets/s = ${int(r.rowsPerSecond)} rows/s`,
      `${times(r.speedup)} of 1${
        r.gainOverPrevious === null
          ? ""
          : ` (${r.gainOverPrevious >= 0 ? "+" : ""}${int(r.gainOverPrevious)}/s)`
      }`,
      "",
    ],
    ...(r.cpu ? [["", "  where the CPU went", describeDrainCpu(r.cpu), "", ""] satisfies Row] : []),
  ]);
  for (const f of s.restarts) {
    const first = f.restartToFirstRowSeconds;
    rows.push([
      "",
      `restart after ${
        f.signal === "SIGKILL" ? "kill -9" : "SIGTERM"
      }: exit / replacement's first row`,
      `${f.exitSeconds.toFixed(2)} s / ${
        first === null ? "none (all stored)" : `${first.toFixed(2)} s after its spawn`
      }`,
      "",
      "",
    ]);
  }
  rows.push([
    "",
    "restart drain: every ticket exactly once",
    s.restartExact ? "yes" : "NO",
    "",
    "",
  ]);
  return rows;
}

function sectionRows<T extends object>(
  name: string,
  section: T | SectionError | undefined,
  rows: (s: T) => Row[],
): Row[] {
  if (!section) return [];
  if ("error" in section) return [[name, "FAILED", section.error.split("\n")[0]!, "", ""]];
  return rows(section as T);
}

/** The results as an aligned text table, with each target next to its figure. */
export function formatTable(results: BenchResults): string {
  const { sections, targets } = results;
  const rows: Row[] = [
    ["section", "figure", "value", "ratio", "target"],
    ...sectionRows("producer", sections.producer, (s) => producerRows(s, targets)),
    ...sectionRows("sink", sections.sink, (s) => sinkRows(s, targets)),
    ...sectionRows("e2e", sections.e2e, (s) => e2eRows(s, targets)),
    ...sectionRows("latency", sections.latency, (s) => latencyRows(s, targets)),
    ...sectionRows("memory", sections.memory, (s) => memoryRows(s, targets)),
    ...sectionRows("peer", sections.peer, (s) => peerRows(s, targets)),
    ...sectionRows("scale", sections.scale, scaleRows),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => [...r[c]!].length)));
  const line = (r: Row) =>
    r.map((cell, c) => cell + " ".repeat(widths[c]! - [...cell].length)).join("  ").trimEnd();
  const m = results.machine;
  const notes = [
    `${
      results.smoke ? "SMOKE run (tiny sizes; figures not meaningful). " : ""
    }machine: ${m.cores} cores, ${int(m.memoryMiB)} MiB, load ${m.loadAtStart.join(" ")} at start${
      m.loadAtEnd ? `, ${m.loadAtEnd.join(" ")} at end` : ""
    }`,
    m.note,
    `code: commit ${results.code.commit}${
      results.code.uncommitted.length
        ? ` plus uncommitted changes to ${results.code.uncommitted.join(", ")}`
        : ""
    }`,
  ];
  const producer = ok(sections.producer);
  if (producer?.listenerNote) notes.push(producer.listenerNote);
  for (const [name, list] of Object.entries(results.disturbances)) {
    for (const text of list) notes.push(`DISTURBED ${name}: ${text}`);
  }
  return [line(rows[0]!), ...rows.slice(1).map(line), "", ...notes].join("\n");
}

/** Default results file: `bench/results/<ISO 8601 basic timestamp>.json`. */
export function defaultResultsPath(startedAt: Date): string {
  const stamp = startedAt.toISOString().replace(/\.\d+Z$/, "Z").replace(/[-:]/g, "");
  return join(ROOT, "bench/results", `${stamp}.json`);
}

/** Writes the results as JSON; returns the path. */
export async function writeResults(results: BenchResults, path: string): Promise<string> {
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(results, null, 2) + "\n");
  return path;
}
