/**
 * Metrics history: producer and consumer runs append JSON lines (start, a snapshot every 5 s,
 * end) to a log file, `logs/metrics.jsonl` by default. No secret is ever written.
 * @module
 */
import { dirname } from "node:path";
import { redact } from "../log.ts";
import type { FlagSpecs, FlagValues } from "../cli/cli.ts";
import { DEFAULT_METRICS_HOST, type MetricsEndpoint } from "./prometheus.ts";

/** Default metrics log. */
export const DEFAULT_METRICS_LOG = "logs/metrics.jsonl";
/** Seconds between snapshots of a long run. */
export const SNAPSHOT_SECONDS = 5;

/**
 * Flags of the metrics, shared by producer and consumer: the history file (`report` reads the
 * same file) and the Prometheus endpoint. Only the type of the spec comes from lib/cli, so this
 * module imports nothing above it.
 */
export const METRICS_FLAGS = {
  "metrics-log": {
    type: "string",
    description: "append run metrics (JSON lines) to this file",
    default: DEFAULT_METRICS_LOG,
  },
  "no-metrics-log": { type: "boolean", description: "do not write the metrics history" },
  "metrics-port": {
    type: "integer",
    description: "serve /metrics for Prometheus on this TCP port while the run lasts " +
      "(0: any free port, shown at the start)",
    defaultLabel: "not served",
    min: 0,
    max: 65_535,
  },
  "metrics-host": {
    type: "string",
    description: "address the /metrics endpoint listens on, with --metrics-port " +
      "(0.0.0.0: every interface)",
    default: DEFAULT_METRICS_HOST,
  },
} as const satisfies FlagSpecs;

/** The metrics history file the flags ask for; undefined with `--no-metrics-log`. */
export function metricsLogOf(values: FlagValues<typeof METRICS_FLAGS>): string | undefined {
  return values["no-metrics-log"] ? undefined : values["metrics-log"];
}

/** Where the flags ask for the Prometheus endpoint; undefined without `--metrics-port`. */
export function metricsEndpointOf(
  values: FlagValues<typeof METRICS_FLAGS>,
): MetricsEndpoint | undefined {
  const port = values["metrics-port"];
  return port === undefined ? undefined : { host: values["metrics-host"], port };
}

/** Publish-to-row latency percentiles, in milliseconds. */
export interface LatencyStats {
  p50: number;
  p99: number;
  max: number;
  count: number;
}

/** One line of the metrics log. */
export interface MetricsRecord {
  /** ISO time of the record. */
  ts: string;
  /** Id shared by the records of one run. */
  run: string;
  role: "producer" | "consumer";
  event: "start" | "snapshot" | "end";
  topic: string;
  table?: string;
  group?: string;
  counts: {
    sent?: number;
    unsent?: number;
    received?: number;
    stored?: number;
    duplicates?: number;
    conflicts?: number;
    deadLetters?: number;
    /** Consumer: cancellations applied (ticket cancelled, seats freed, payment refunded). */
    cancelled?: number;
    /** Consumer: tickets PostgreSQL refused (DB_REJECTED), also in deadLetters. */
    rejected?: number;
    /** Consumer: messages deleted from the log (retention) before this group read them. */
    lost?: number;
    /** Consumer: batches dropped because another member had moved the stored offset. */
    fenced?: number;
    errors?: number;
  };
  /** Seconds since the run started. */
  elapsedSeconds: number;
  /** Messages per second since the start of the run. */
  rate: number;
  /** Messages per second since the previous record. */
  intervalRate: number;
  /**
   * Consumer: the run's dead letters by reason (cumulative, like `counts`; they sum to
   * `counts.deadLetters`). Records written before this field existed have none.
   */
  deadLettersByReason?: Record<string, number>;
  /** Consumer: messages in the topic not yet stored, per partition. */
  lag?: Record<string, number>;
  /** Consumer: time from publish (Kafka timestamp) to committed row, for rows since the last record. */
  latencyMs?: LatencyStats;
  /** Largest resident set size seen so far, in MiB. */
  peakRssMb: number;
  /** Consumer, on `start`: stored offsets moved by `--reset-offsets`, per partition. */
  reset?: Record<string, { from: string | null; to: string }>;
  /** Exit state on `end`: "ok" or a one-line error. */
  outcome?: string;
}

/** Percentiles of a list of numbers (the list is sorted in place). */
export function latencyStats(values: number[]): LatencyStats | undefined {
  if (values.length === 0) return undefined;
  values.sort((a, b) => a - b);
  const at = (q: number) => values[Math.min(values.length - 1, Math.floor(q * values.length))]!;
  return { p50: at(0.5), p99: at(0.99), max: values[values.length - 1]!, count: values.length };
}

/** Collects latencies between records; keeps a bounded uniform sample. */
export class LatencySample {
  #values: number[] = [];
  #seen = 0;
  #max = 0;
  constructor(readonly capacity = 20_000) {}

  /** Adds one latency in ms. */
  add(ms: number): void {
    this.#seen++;
    if (ms > this.#max) this.#max = ms;
    if (this.#values.length < this.capacity) this.#values.push(ms);
    else {
      const i = Math.floor(Math.random() * this.#seen);
      if (i < this.capacity) this.#values[i] = ms;
    }
  }

  /** Percentiles of the sample since the last call, then starts afresh. */
  take(): LatencyStats | undefined {
    const stats = latencyStats(this.#values);
    if (stats) stats.max = this.#max, stats.count = this.#seen;
    this.#values = [];
    this.#seen = 0;
    this.#max = 0;
    return stats;
  }
}

type Base = Pick<MetricsRecord, "role" | "topic" | "table" | "group">;

/** Appends metrics records of one run; a no-op when `path` is undefined. */
export class MetricsLog {
  readonly run = crypto.randomUUID();
  readonly #started = performance.now();
  #lastAt = performance.now();
  #lastCount = 0;
  #peakRss = 0;
  #file: Deno.FsFile | undefined;

  constructor(readonly path: string | undefined, readonly base: Base) {
    if (!path) return;
    Deno.mkdirSync(dirname(path), { recursive: true });
    this.#file = Deno.openSync(path, { append: true, create: true, mode: 0o644 });
  }

  /** Records the current resident set size in the peak. */
  sampleMemory(): number {
    const rss = Deno.memoryUsage().rss / (1024 * 1024);
    if (rss > this.#peakRss) this.#peakRss = rss;
    return this.#peakRss;
  }

  /** Appends a record; `progress` is the count the rates are computed from. */
  write(
    event: MetricsRecord["event"],
    counts: MetricsRecord["counts"],
    progress: number,
    extra: Partial<MetricsRecord> = {},
  ): MetricsRecord {
    const now = performance.now();
    const elapsed = (now - this.#started) / 1000;
    const interval = (now - this.#lastAt) / 1000;
    const record: MetricsRecord = {
      ts: new Date().toISOString(),
      run: this.run,
      ...this.base,
      event,
      counts: { ...counts },
      elapsedSeconds: round(elapsed),
      rate: round(elapsed > 0 ? progress / elapsed : 0),
      intervalRate: round(interval > 0 ? (progress - this.#lastCount) / interval : 0),
      peakRssMb: round(this.sampleMemory()),
      ...extra,
    };
    this.#lastAt = now;
    this.#lastCount = progress;
    if (this.#file) {
      this.#file.writeSync(new TextEncoder().encode(redact(JSON.stringify(record)) + "\n"));
    }
    return record;
  }

  /** Closes the file. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

/** Reads a metrics log; lines that do not parse are skipped and counted. */
export function readMetrics(path: string): { records: MetricsRecord[]; skipped: number } {
  const records: MetricsRecord[] = [];
  let skipped = 0;
  for (const line of Deno.readTextFileSync(path).split("\n")) {
    if (!line.trim()) continue;
    try {
      records.push(JSON.parse(line));
    } catch {
      skipped++;
    }
  }
  return { records, skipped };
}
