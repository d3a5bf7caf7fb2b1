/**
 * Parsers of the lines the benchmarked programs print: ProducerPerformance's final summary and the
 * consumer's summary line.
 * @module
 */

/** ProducerPerformance's final line. */
export interface ProducerPerformanceLine {
  records: number;
  recordsPerSecond: number;
  megabytesPerSecond: number;
  avgLatencyMs: number;
  maxLatencyMs: number;
  p50LatencyMs?: number;
  p99LatencyMs?: number;
}

const PERF_LINE =
  /(\d+) records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency(.*)$/gm;

/**
 * Reads the final summary of `org.apache.kafka.tools.ProducerPerformance` (the last line with
 * "records/sec" and percentiles); undefined when the output has none.
 */
export function parseProducerPerformance(output: string): ProducerPerformanceLine | undefined {
  let last: ProducerPerformanceLine | undefined;
  for (const m of output.matchAll(PERF_LINE)) {
    const rest = m[6] ?? "";
    if (!/50th/.test(rest)) continue; // interim progress lines have no percentiles
    last = {
      records: Number(m[1]),
      recordsPerSecond: Number(m[2]),
      megabytesPerSecond: Number(m[3]),
      avgLatencyMs: Number(m[4]),
      maxLatencyMs: Number(m[5]),
      p50LatencyMs: percentile(rest, "50th"),
      p99LatencyMs: percentile(rest, "99th"),
    };
  }
  return last;
}

function percentile(text: string, label: string): number | undefined {
  const m = new RegExp(`([\\d.]+) ms ${label}`).exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The consumer's summary line. */
export interface ConsumerSummaryLine {
  consumed: number;
  seconds: number;
  ticketsPerSecond: number;
  stored?: number;
}

/**
 * Reads "consumed N messages in S s of work (R tickets/s): stored M, ..." from the consumer's
 * output; undefined when absent.
 */
export function parseConsumerSummary(output: string): ConsumerSummaryLine | undefined {
  const m = /consumed (\d+) messages in ([\d.]+) s of work \((\d+) tickets\/s\)(?:: stored (\d+))?/
    .exec(output);
  if (!m) return undefined;
  return {
    consumed: Number(m[1]),
    seconds: Number(m[2]),
    ticketsPerSecond: Number(m[3]),
    ...(m[4] !== undefined ? { stored: Number(m[4]) } : {}),
  };
}
