/**
 * The Prometheus endpoint of a producer or consumer run (`--metrics-port`): its metrics in a
 * registry made per run (prom-client; no default metrics, which read Node's internals), served as
 * `/metrics` in Prometheus's text format while the run lasts. Importing this module starts
 * nothing.
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { AppError, messageOf } from "../errors.ts";
import { log } from "../log.ts";

/** Default address of the Prometheus endpoint (`--metrics-host`): this machine only. */
export const DEFAULT_METRICS_HOST = "127.0.0.1";

/** Where `/metrics` is served. */
export interface MetricsEndpoint {
  /** Address to listen on. @default {"127.0.0.1"} */
  host?: string;
  /** TCP port; 0 for any free one. */
  port: number;
}

/** Buckets of the batch write time, in seconds: one COPY of a few rows up to an outage's retries. */
const WRITE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Buckets of the publish-to-row latency, in seconds: live traffic up to a backlog's age. */
const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

/** What every run exposes: its registry (labelled with the run) and its resident memory. */
export class RunMetrics {
  /** This run's registry; nothing else registers here. */
  readonly registry = new Registry();

  /** `labels` are added to every series, e.g. `{ role: "consumer", topic: "tickets" }`. */
  constructor(labels: Record<string, string>) {
    this.registry.setDefaultLabels(labels);
    new Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident memory size in bytes.",
      registers: [this.registry],
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
  }

  /** The metrics in Prometheus's text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** The producer's metrics. */
export class ProducerMetrics extends RunMetrics {
  /** Tickets the broker acknowledged. */
  readonly sent: Counter;
  /** Tickets given up on after retries. */
  readonly unsent: Counter;

  constructor(topic: string) {
    super({ role: "producer", topic });
    const registers = [this.registry];
    this.sent = new Counter({
      name: "tickets_sent_total",
      help: "Tickets published and acknowledged by the broker.",
      registers,
    });
    this.unsent = new Counter({
      name: "tickets_unsent_total",
      help: "Tickets that could not be published after retries.",
      registers,
    });
  }
}

/** What one written chunk adds to the consumer's metrics. */
export interface WrittenChunk {
  /** False when another member had moved the stored offset (the chunk, or its end, fenced). */
  committed: boolean;
  /** Messages written in committed transactions. */
  messages: number;
  stored: number;
  duplicates: number;
  conflicts: number;
  /** Cancellations applied (ticket cancelled, seats freed, payment refunded). */
  cancelled: number;
  /** Dead letters written, by reason (SEAT_TAKEN, DB_REJECTED, BAD_JSON, ...). */
  deadLetters: Record<string, number>;
  /** Messages deleted from the log (retention) before they were read. */
  lost: number;
  /** From the start of the write to its commit, retries included. */
  writeSeconds: number;
  /** Publish-to-row latency of each stored row, in seconds. */
  latencySeconds: number[];
}

/** The consumer's metrics. */
export class ConsumerMetrics extends RunMetrics {
  readonly received: Counter;
  readonly stored: Counter;
  readonly duplicates: Counter;
  readonly conflicts: Counter;
  readonly cancelled: Counter;
  readonly deadLetters: Counter<"reason">;
  readonly fencedBatches: Counter;
  readonly lost: Counter;
  readonly lag: Gauge<"partition">;
  readonly batchWriteSeconds: Histogram;
  readonly publishToRowSeconds: Histogram;

  constructor(labels: { topic: string; group: string; table: string }) {
    super({ role: "consumer", ...labels });
    const registers = [this.registry];
    const counter = (name: string, help: string) => new Counter({ name, help, registers });
    this.received = counter(
      "tickets_received_total",
      "Messages written (as rows, duplicates, conflicts or dead letters) in committed batches.",
    );
    this.stored = counter("tickets_stored_total", "Tickets stored as new rows.");
    this.duplicates = counter(
      "tickets_duplicates_total",
      "Tickets already stored with the same content (redeliveries).",
    );
    this.conflicts = counter(
      "tickets_conflicts_total",
      "Tickets whose id was stored with other content (recorded, first stored wins).",
    );
    this.cancelled = counter(
      "tickets_cancelled_total",
      "Cancellations applied: ticket cancelled, its seats freed, its payment refunded.",
    );
    this.deadLetters = new Counter({
      name: "tickets_dead_letters_total",
      help: "Messages refused and recorded as dead letters, by reason.",
      labelNames: ["reason"],
      registers,
    });
    this.fencedBatches = counter(
      "tickets_fenced_batches_total",
      "Batches dropped because another group member had moved the stored offset.",
    );
    this.lost = counter(
      "tickets_lost_total",
      "Messages deleted from the log (retention) before this group read them.",
    );
    this.lag = new Gauge({
      name: "tickets_consumer_lag_messages",
      help: "Messages in the partition not yet stored (high watermark - stored offset).",
      labelNames: ["partition"],
      registers,
    });
    this.batchWriteSeconds = new Histogram({
      name: "tickets_batch_write_seconds",
      help: "Time to write one batch to PostgreSQL and commit it, retries included.",
      buckets: WRITE_BUCKETS,
      registers,
    });
    this.publishToRowSeconds = new Histogram({
      name: "tickets_publish_to_row_seconds",
      help: "Time from the Kafka timestamp of a ticket to the commit of its row.",
      buckets: LATENCY_BUCKETS,
      registers,
    });
  }

  /** Adds one written chunk. */
  written(chunk: WrittenChunk): void {
    this.received.inc(chunk.messages);
    this.stored.inc(chunk.stored);
    this.duplicates.inc(chunk.duplicates);
    this.conflicts.inc(chunk.conflicts);
    this.cancelled.inc(chunk.cancelled);
    for (const [reason, n] of Object.entries(chunk.deadLetters)) {
      if (n > 0) this.deadLetters.inc({ reason }, n);
    }
    this.lost.inc(chunk.lost);
    if (!chunk.committed) this.fencedBatches.inc();
    this.batchWriteSeconds.observe(chunk.writeSeconds);
    for (const seconds of chunk.latencySeconds) this.publishToRowSeconds.observe(seconds);
  }

  /** Sets the lag of each partition (messages not yet stored). */
  setLag(lag: Record<string, number>): void {
    for (const [partition, messages] of Object.entries(lag)) this.lag.set({ partition }, messages);
  }
}

/** A running `/metrics` endpoint. */
export interface MetricsServer {
  /** E.g. `http://127.0.0.1:9464/metrics`. */
  readonly url: string;
  /** Stops listening; a scrape in progress is answered first. */
  close(): Promise<void>;
}

/** Serves `metrics` as `/metrics` on `endpoint` until closed. */
export function serveMetrics(metrics: RunMetrics, endpoint: MetricsEndpoint): MetricsServer {
  const hostname = endpoint.host ?? DEFAULT_METRICS_HOST;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port: endpoint.port, onListen: () => {} }, async (request) => {
      const path = new URL(request.url).pathname;
      if (path !== "/metrics") {
        return new Response("not found: the metrics are at /metrics\n", { status: 404 });
      }
      if (request.method !== "GET" && request.method !== "HEAD") {
        return new Response("method not allowed\n", { status: 405, headers: { allow: "GET" } });
      }
      try {
        return new Response(request.method === "HEAD" ? null : await metrics.text(), {
          headers: { "content-type": metrics.registry.contentType },
        });
      } catch (error) {
        log("warn", `serving /metrics: ${messageOf(error)}`);
        return new Response("metrics unavailable\n", { status: 500 });
      }
    });
  } catch (error) {
    throw new AppError(
      "BAD_INPUT",
      `cannot serve metrics on ${hostname}:${endpoint.port} (${messageOf(error)}); ` +
        `choose another --metrics-port or --metrics-host`,
      { cause: error },
    );
  }
  const { port } = server.addr;
  const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
  const url = `http://${shown}:${port}/metrics`;
  log("info", `metrics at ${url}`);
  return { url, close: () => server.shutdown() };
}
