/**
 * Producer throughput: our `runProducer` (default options) against a naive producer that awaits
 * one KafkaJS `send()` per message, and against Kafka's own Java `ProducerPerformance`.
 * @module
 */
import { join } from "node:path";
import process from "node:process";
import type { SecurityProtocol } from "../lib/config/creds.ts";
import { messageOf } from "../lib/errors.ts";
import { createKafka } from "../lib/kafka/kafka.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import {
  averageTicketBytes,
  benchName,
  CleanupScope,
  createTopic,
  perSecond,
  progress,
  ratio,
  releaseAccess,
  runProcess,
  type StackAccess,
  stackAccess,
  tail,
  timed,
} from "./common.ts";
import { parseProducerPerformance, type ProducerPerformanceLine } from "./parse.ts";

/** Sizes of the producer benchmark. */
export interface ProducerSizes {
  /** Tickets for `runProducer` and for ProducerPerformance. */
  tickets: number;
  /** Tickets for the naive one-send-per-message producer. */
  naiveTickets: number;
}

/** One producer's measured throughput. */
export interface ThroughputFigure {
  tickets: number;
  seconds: number;
  ticketsPerSecond: number;
  /** CPU (user + system) the producer used, where measured: a figure that other load moves less. */
  cpuSeconds?: number;
}

/** Results of {@linkcode benchProducer}. */
export interface ProducerResults {
  /** Listener all three producers used. */
  listener: SecurityProtocol;
  /** Why the listener is not SSL, when it is not. */
  listenerNote?: string;
  /** Average ticket JSON size, also the record size given to ProducerPerformance. */
  recordBytes: number;
  ours: ThroughputFigure;
  naive: ThroughputFigure;
  producerPerformance: ProducerPerformanceLine & {
    recordSize: number;
    /** CPU of the tool's process tree (JVM start and JIT included), from bash's `times`. */
    cpuSeconds?: number;
  };
  ratios: {
    vsNaive: number | null;
    vsProducerPerformance: number | null;
    /** ProducerPerformance's CPU per record ÷ ours per ticket (> 1: we spend less). */
    cpuPerRecordVsProducerPerformance: number | null;
  };
}

/** Runs the three producers on fresh topics (deleted afterwards). */
export async function benchProducer(
  suffix: string,
  sizes: ProducerSizes,
): Promise<ProducerResults> {
  const recordBytes = averageTicketBytes();
  let access = await stackAccess("SSL");
  const scope = new CleanupScope();
  try {
    let java: ProducerPerformanceLine & { cpuSeconds?: number };
    let listenerNote: string | undefined;
    try {
      java = await producerPerformance(access, scope, suffix, sizes.tickets, recordBytes);
    } catch (error) {
      listenerNote = `ProducerPerformance failed over SSL (${
        messageOf(error)
      }); all three producers use PLAINTEXT`;
      progress(listenerNote);
      await scope.close();
      await releaseAccess(access);
      access = await stackAccess("PLAINTEXT");
      java = await producerPerformance(access, scope, `${suffix}p`, sizes.tickets, recordBytes);
    }
    const ours = await ourProducer(access, scope, suffix, sizes.tickets);
    const naive = await naiveProducer(access, scope, suffix, sizes.naiveTickets);
    return {
      listener: access.protocol,
      ...(listenerNote ? { listenerNote } : {}),
      recordBytes,
      ours,
      naive,
      producerPerformance: { ...java, recordSize: recordBytes },
      ratios: {
        vsNaive: ratio(ours.ticketsPerSecond, naive.ticketsPerSecond),
        vsProducerPerformance: ratio(ours.ticketsPerSecond, java.recordsPerSecond),
        cpuPerRecordVsProducerPerformance: ours.cpuSeconds && java.cpuSeconds
          ? ratio(java.cpuSeconds / java.records, ours.cpuSeconds / ours.tickets)
          : null,
      },
    };
  } finally {
    await scope.close();
    await releaseAccess(access);
  }
}

async function ourProducer(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  tickets: number,
): Promise<ThroughputFigure> {
  const topic = benchName("producer", suffix);
  scope.topics(access, [topic]);
  progress(`producer: runProducer, ${tickets} tickets, ${access.protocol}`);
  const cpu = process.cpuUsage();
  const summary = await runProducer({ kafka: access.connection.kafka, topic, num: tickets });
  const used = process.cpuUsage(cpu);
  const figure = {
    tickets: summary.sent,
    seconds: summary.seconds,
    ticketsPerSecond: perSecond(summary.sent, summary.seconds),
    cpuSeconds: (used.user + used.system) / 1e6,
  };
  progress(
    `producer: runProducer ${Math.round(figure.ticketsPerSecond)} tickets/s, ${
      cpuMicros(figure.cpuSeconds, figure.tickets)
    } µs CPU a ticket`,
  );
  return figure;
}

/** One `await producer.send()` per message: the shape of a simple port of the original script. */
async function naiveProducer(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  tickets: number,
): Promise<ThroughputFigure> {
  const topic = benchName("producer_naive", suffix);
  scope.topics(access, [topic]);
  await createTopic(access, topic);
  progress(`producer: naive send() per message, ${tickets} tickets`);
  const producer = createKafka(access.connection.kafka).producer({
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  const generator = new TicketGenerator();
  try {
    const { seconds } = await timed(async () => {
      for (let i = 0; i < tickets; i++) {
        const ticket = generator.next();
        await producer.send({
          topic,
          acks: -1,
          messages: [{ key: ticket.ticket_id, value: JSON.stringify(ticket) }],
        });
      }
    });
    const figure = { tickets, seconds, ticketsPerSecond: perSecond(tickets, seconds) };
    progress(`producer: naive ${Math.round(figure.ticketsPerSecond)} tickets/s`);
    return figure;
  } finally {
    await producer.disconnect();
  }
}

/** Kafka's Java ProducerPerformance at its defaults, with acks=all and no compression. */
async function producerPerformance(
  access: StackAccess,
  scope: CleanupScope,
  suffix: string,
  records: number,
  recordSize: number,
): Promise<ProducerPerformanceLine & { cpuSeconds?: number }> {
  const topic = benchName("producer_java", suffix);
  scope.topics(access, [topic]);
  await createTopic(access, topic);
  const dir = await Deno.makeTempDir({ prefix: "tickets-bench-" });
  scope.add("remove ProducerPerformance config", () => Deno.remove(dir, { recursive: true }));
  const config = await writeJavaClientConfig(dir, access);
  progress(
    `producer: ProducerPerformance, ${records} records of ${recordSize} bytes, ${access.protocol}`,
  );
  // bash's `times` prints the CPU of its finished children (the JVM) as the last line
  const out = await runProcess("bash", [
    "-c",
    'bash dev/stack.sh tool "$@"; code=$?; times >&2; exit $code',
    "bash",
    "org.apache.kafka.tools.ProducerPerformance",
    "--topic",
    topic,
    "--num-records",
    String(records),
    "--record-size",
    String(recordSize),
    "--throughput",
    "-1",
    "--command-config",
    config,
    "--command-property",
    `bootstrap.servers=${access.bootstrap}`,
    "acks=all",
    "compression.type=none",
  ]);
  const line = parseProducerPerformance(out.stdout);
  if (out.code !== 0 || !line) {
    throw new Error(`exit code ${out.code}: ${tail(out.stderr || out.stdout, 3)}`);
  }
  const cpuSeconds = childCpuSeconds(out.stderr);
  progress(
    `producer: ProducerPerformance ${Math.round(line.recordsPerSecond)} records/s, ${
      cpuMicros(cpuSeconds, line.records)
    } µs CPU a record`,
  );
  return cpuSeconds === undefined ? line : { ...line, cpuSeconds };
}

/** User + system seconds of the children from the last line of bash's `times` ("0m1.5s 0m0.2s"). */
export function childCpuSeconds(stderr: string): number | undefined {
  const last = stderr.trim().split("\n").at(-1) ?? "";
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(last.trim());
  if (!m) return undefined;
  return Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]);
}

function cpuMicros(cpuSeconds: number | undefined, records: number): string {
  return cpuSeconds === undefined ? "?" : ((cpuSeconds * 1e6) / records).toFixed(1);
}

/**
 * Writes the Java client's properties: for SSL a PEM truststore (ca.pem) and a PEM keystore made
 * of service.key + service.cert (mode 600, removed with the folder).
 */
async function writeJavaClientConfig(dir: string, access: StackAccess): Promise<string> {
  const path = join(dir, "producer.properties");
  const lines = [`security.protocol=${access.protocol}`];
  if (access.protocol === "SSL") {
    const keystore = join(dir, "keystore.pem");
    const key = await Deno.readTextFile(join(access.certPath, "service.key"));
    const cert = await Deno.readTextFile(join(access.certPath, "service.cert"));
    await Deno.writeTextFile(keystore, `${key.trim()}\n${cert.trim()}\n`, { mode: 0o600 });
    lines.push(
      "ssl.truststore.type=PEM",
      `ssl.truststore.location=${join(access.certPath, "ca.pem")}`,
      "ssl.keystore.type=PEM",
      `ssl.keystore.location=${keystore}`,
    );
  }
  await Deno.writeTextFile(path, lines.join("\n") + "\n", { mode: 0o600 });
  return path;
}
