/**
 * The producer: generates tickets and publishes them to Kafka in application-side batches (KafkaJS
 * has no linger), several batches in flight, keyed by ticket_id, waiting for acknowledgement.
 * @module
 */
import { Buffer } from "node:buffer";
import { CompressionTypes } from "kafkajs";
import type { KafkaSettings } from "../config/config.ts";
import { AppError, messageOf } from "../errors.ts";
import {
  ACKS,
  COMPRESSIONS,
  createKafka,
  describeKafkaError,
  ensureTopic,
  isRetriableKafkaError,
  probeKafka,
  withDeadline,
} from "../kafka/kafka.ts";
import { createKeyPartitioner } from "../kafka/partitioner.ts";
import { installFastProduceRequests } from "../kafka/produce_encoder.ts";
import { log, ProgressReporter } from "../log.ts";
import { MetricsLog, SNAPSHOT_SECONDS } from "../observe/metrics.ts";
import {
  type MetricsEndpoint,
  type MetricsServer,
  ProducerMetrics,
  serveMetrics,
} from "../observe/prometheus.ts";
import type { Ticket } from "../model/columns.ts";
import { TicketGenerator } from "../model/generator.ts";
import { Lifecycle, type LifecycleCounts, wantsLifecycle } from "./lifecycle.ts";

/** Options of {@linkcode runProducer}. */
export interface ProducerOptions {
  kafka: KafkaSettings;
  topic: string;
  /** Tickets to publish; ignored with `continuous`. @default {10; all of `source` when given} */
  num?: number;
  /** Publish until the signal aborts. @default {false} */
  continuous?: boolean;
  /** Same seed, same tickets. */
  seed?: number;
  /** Share of tickets that re-sell a seat already sold (SEAT_TAKEN demo). @default {0} */
  seatClashRate?: number;
  /** Share (0-1) of the run's tickets cancelled after their purchase (lifecycle.ts). @default {0} */
  cancelRate?: number;
  /** Share (0-1) of the messages replaced by named poison (model/poison.ts). @default {0} */
  poisonRate?: number;
  /** File for the manifest: every acknowledged message's place and expected outcome. */
  manifest?: string;
  /** Tickets per second; undefined for as fast as possible. */
  rate?: number;
  /** Partitions of the topic when it has to be created. @default {3} */
  partitions?: number;
  /** Tickets per produce request. @default {1000} */
  batchSize?: number;
  /** Produce requests awaiting acknowledgement at once. @default {4} */
  inFlight?: number;
  /** @default {"none"} */
  compression?: typeof COMPRESSIONS[number];
  /** @default {"all"} */
  acks?: typeof ACKS[number];
  /** Seconds to keep retrying a batch the broker does not acknowledge. @default {60} */
  sendTimeoutSeconds?: number;
  /** Metrics history file (JSON lines); undefined for none. */
  metricsLog?: string;
  /** Where to serve `/metrics` for Prometheus while the run lasts; undefined for nowhere. */
  prometheus?: MetricsEndpoint;
  /** Called with each ticket as it is queued (tests keep them to compare). */
  onTicket?: (ticket: Ticket) => void;
  /** Replaces the generator, e.g. to publish given messages. */
  source?: () => { key: string | null; value: Uint8Array | string | null } | undefined;
  signal?: AbortSignal;
}

/** Counts of a producer run. */
export interface ProducerSummary {
  sent: number;
  /** Tickets that could not be published after retries. */
  unsent: number;
  seconds: number;
  topicCreated: boolean;
  /** With cancellations, poison or a manifest: acknowledged messages by kind. */
  kinds?: LifecycleCounts;
}

/**
 * Defaults of {@linkcode ProducerOptions}, the one place they are set: the producer command's
 * flags show and apply these values.
 */
export const PRODUCER_DEFAULTS = {
  num: 10,
  seatClashRate: 0,
  cancelRate: 0,
  poisonRate: 0,
  partitions: 3,
  batchSize: 1000,
  inFlight: 4,
  compression: "none",
  acks: "all",
  sendTimeoutSeconds: 60,
} as const satisfies Partial<ProducerOptions>;

const ACK_VALUES = { all: -1, "1": 1, "0": 0 } as const;

/** Publishes tickets; throws UNSENT (after reporting) when any could not be published. */
export async function runProducer(options: ProducerOptions): Promise<ProducerSummary> {
  const total = options.continuous || (options.source && options.num === undefined)
    ? Infinity
    : options.num ?? PRODUCER_DEFAULTS.num;
  const batchSize = options.batchSize ?? PRODUCER_DEFAULTS.batchSize;
  const inFlight = Math.max(1, options.inFlight ?? PRODUCER_DEFAULTS.inFlight);
  const generator = new TicketGenerator({
    seed: options.seed,
    seatClashRate: options.seatClashRate,
  });
  const lifecycle = wantsLifecycle(options) && !options.source
    ? new Lifecycle(options, () => generator.next(), { batchSize, inFlight })
    : undefined;
  const kafka = createKafka(options.kafka, { clientId: "tickets-producer" });
  installFastProduceRequests(); // KafkaJS's bytes, encoded in one pass (kafka/produce_encoder.ts)
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    maxInFlightRequests: inFlight,
    createPartitioner: createKeyPartitioner, // KafkaJS's default partitions, a cheaper murmur2
  });
  const summary: ProducerSummary = { sent: 0, unsent: 0, seconds: 0, topicCreated: false };
  const started = performance.now();
  const metrics = new MetricsLog(options.metricsLog, { role: "producer", topic: options.topic });
  const prometheus = options.prometheus ? new ProducerMetrics(options.topic) : undefined;
  let server: MetricsServer | undefined;
  const counts = () => ({ sent: summary.sent, unsent: summary.unsent });
  const reporter = new ProgressReporter(
    "producer: sent",
    Number.isFinite(total) ? total : undefined,
  );
  metrics.write("start", counts(), 0);
  const snapshots = setInterval(
    () => metrics.write("snapshot", counts(), summary.sent),
    SNAPSHOT_SECONDS * 1000,
  );
  let firstError: unknown;
  let queued = 0;
  const pending = new Set<Promise<void>>();

  const next = (): { key: string | null; value: Buffer | string | null } | undefined => {
    if (options.source) {
      const m = options.source();
      return m &&
        { key: m.key, value: m.value instanceof Uint8Array ? Buffer.from(m.value) : m.value };
    }
    const { ticket, json } = generator.nextWithJson(); // json: JSON.stringify(ticket), made faster
    options.onTicket?.(ticket);
    return { key: ticket.ticket_id, value: json };
  };

  const sendTimeoutMs = (options.sendTimeoutSeconds ?? PRODUCER_DEFAULTS.sendTimeoutSeconds) * 1000;
  const sendWithRetry = async (
    messages: { key: string | null; value: Buffer | string | null }[],
  ) => {
    const deadline = performance.now() + sendTimeoutMs;
    for (let attempt = 1;; attempt++) {
      try {
        const sending = producer.send({
          topic: options.topic,
          messages,
          acks: ACK_VALUES[options.acks ?? PRODUCER_DEFAULTS.acks],
          compression: options.compression === "gzip"
            ? CompressionTypes.GZIP
            : CompressionTypes.None,
        });
        sending.catch(() => {}); // past the deadline nobody waits for it
        // KafkaJS retries inside send() too; --send-timeout bounds the whole wait, those included
        return await withDeadline(
          sending,
          Math.max(1, deadline - performance.now()),
          "publishing to Kafka (--send-timeout)",
        );
      } catch (error) {
        if (
          !isRetriableKafkaError(error) || performance.now() > deadline || firstError !== undefined
        ) {
          throw error;
        }
        const wait = Math.min(5_000, 250 * 2 ** Math.min(attempt, 5));
        log(
          "warn",
          `publishing ${messages.length} tickets failed (attempt ${attempt}): ${
            messageOf(describeKafkaError(error, options.kafka))
          }; retrying in ${wait} ms`,
        );
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  };

  try {
    if (prometheus) server = serveMetrics(prometheus, options.prometheus!);
    const topics = await probeKafka(options.kafka);
    summary.topicCreated = !topics.includes(options.topic) &&
      await withDeadline(
        ensureTopic(kafka, options.topic, options.partitions ?? PRODUCER_DEFAULTS.partitions),
        options.kafka.connectTimeoutMs + 10_000,
        "creating the topic",
      );
    await withDeadline(
      producer.connect(),
      options.kafka.connectTimeoutMs + 2_000,
      "connecting to Kafka",
    );
    await lifecycle?.start(kafka);
    let exhausted = false;
    while (
      (queued < total || lifecycle?.owes()) && !exhausted && firstError === undefined &&
      (!options.signal?.aborted || lifecycle?.owes()) // stopped: the cancels owed still go
    ) {
      let size = Math.min(batchSize, total - queued);
      if (options.rate !== undefined) {
        // pace: never run ahead of rate * elapsed
        const allowed = Math.floor(((performance.now() - started) / 1000) * options.rate) - queued;
        if (allowed <= 0) {
          await new Promise((r) => setTimeout(r, Math.max(1, Math.min(50, 1000 / options.rate!))));
          continue;
        }
        size = Math.min(size, allowed);
      }
      const round = await lifecycle?.next(size); // cancellations, poison and their order
      const messages: Parameters<typeof sendWithRetry>[0] = round?.messages ?? [];
      for (let i = 0; !round && i < size; i++) {
        const m = next();
        if (!m) {
          exhausted = true;
          break;
        }
        messages.push(m);
      }
      if (messages.length === 0) break;
      queued += round ? round.slots : messages.length;
      const request = sendWithRetry(messages);
      lifecycle?.sent(request);
      const send = request.then(() => {
        summary.sent += messages.length;
        prometheus?.sent.inc(messages.length);
        reporter.update(summary.sent, summary.sent / ((performance.now() - started) / 1000));
      }, (error) => {
        summary.unsent += messages.length;
        prometheus?.unsent.inc(messages.length);
        firstError ??= error;
      });
      const tracked: Promise<void> = send.finally(() => pending.delete(tracked));
      pending.add(tracked);
      if (pending.size >= inFlight) await Promise.race(pending);
    }
    await Promise.all(pending);
  } catch (error) {
    const described = error instanceof AppError ? error : describeKafkaError(error, options.kafka);
    metrics.write("end", counts(), summary.sent, { outcome: messageOf(described) });
    metrics.close();
    throw described;
  } finally {
    clearInterval(snapshots);
    reporter.done();
    if (lifecycle) summary.kinds = lifecycle.counts;
    lifecycle?.close();
    await producer.disconnect().catch(() => {});
    await server?.close().catch(() => {});
    summary.seconds = (performance.now() - started) / 1000;
  }
  if (firstError !== undefined && Number.isFinite(total)) summary.unsent += total - queued;
  metrics.write("end", counts(), summary.sent, {
    outcome: firstError === undefined ? "ok" : `${summary.unsent} not sent`,
  });
  metrics.close();
  if (firstError !== undefined) {
    const cause = describeKafkaError(firstError, options.kafka);
    console.log(formatProducerSummary(summary)); // what was sent, before the one error line
    throw new AppError("UNSENT", `${summary.unsent} tickets were not sent (${messageOf(cause)})`, {
      cause: firstError,
    });
  }
  return summary;
}

/** One line describing a producer run. */
export function formatProducerSummary(s: ProducerSummary): string {
  const rate = s.seconds > 0 ? Math.round(s.sent / s.seconds) : 0;
  return `sent ${s.sent} tickets in ${s.seconds.toFixed(2)} s (${rate} tickets/s)${
    s.unsent ? `, ${s.unsent} NOT sent` : ""
  }${
    s.kinds ? `; by kind: ${Object.entries(s.kinds).map(([k, n]) => `${n} ${k}`).join(", ")}` : ""
  }`;
}
