/**
 * Kafka client factory (PLAINTEXT, SSL with the cert folder, SASL_SSL with SCRAM), topic creation,
 * and the translation of KafkaJS errors into one-line messages that name the fix.
 * @module
 */
import process from "node:process";
import {
  Kafka,
  type KafkaConfig,
  type KafkaMessage,
  logLevel as KafkaLogLevel,
  type SASLOptions,
} from "kafkajs";
import type { KafkaSettings } from "../config/config.ts";
import { AppError, messageOf } from "../errors.ts";
import { installFastVarints } from "./kafka_encoder.ts";
import { registerCodecs } from "./codecs.ts";
import { log } from "../log.ts";
import { loadCertFolder } from "../config/tls.ts";

export type { Admin, Consumer, EachBatchPayload, Kafka, Producer } from "kafkajs";

/**
 * What `createKafka` changes in the process, once: KafkaJS arms timers with negative delays
 * (harmless: they fire at once) and Deno warns on each, so that one warning is dropped;
 * KafkaJS's varint writer is replaced by a faster one (see kafka_encoder.ts); and batches other
 * producers compressed with snappy, lz4 or zstd become readable (see codecs.ts).
 */
function adaptKafkaJs(): void {
  if (adapted) return;
  adapted = true;
  installFastVarints();
  registerCodecs();
  const emitWarning = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const type = typeof rest[0] === "string" ? rest[0] : (rest[0] as { type?: string })?.type;
    if ((type ?? (warning as Error)?.name) === "TimeoutNegativeWarning") return;
    return (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
}
let adapted = false;

/** Options of {@linkcode createKafka}. */
export interface KafkaClientOptions {
  /** Client id shown in broker logs. @default {"movie-tickets"} */
  clientId?: string;
  /** Retries of a failed request before giving up. @default {5} */
  retries?: number;
}

/** Builds a KafkaJS client for the settings; checks the cert folder first (SSL, SASL_SSL). */
export function createKafka(settings: KafkaSettings, options: KafkaClientOptions = {}): Kafka {
  adaptKafkaJs();
  const config: KafkaConfig = {
    clientId: options.clientId ?? "movie-tickets",
    brokers: settings.brokers,
    connectionTimeout: settings.connectTimeoutMs,
    authenticationTimeout: settings.connectTimeoutMs,
    requestTimeout: Math.max(30_000, settings.connectTimeoutMs),
    retry: { retries: options.retries ?? 5, initialRetryTime: 300, maxRetryTime: 5_000 },
    logLevel: KafkaLogLevel.NOTHING,
    logCreator: () => ({ namespace, label, log: entry }) => {
      log("debug", `kafkajs ${label} [${namespace}] ${entry.message}`);
    },
  };
  const kafkaDebug = Deno.env.get("KAFKAJS_DEBUG");
  if (kafkaDebug) {
    config.logLevel = kafkaDebug === "debug" ? KafkaLogLevel.DEBUG : KafkaLogLevel.INFO;
  }
  if (settings.securityProtocol === "SSL") {
    if (!settings.certPath) throw new AppError("USAGE", "SSL needs --cert-path DIR");
    const tls = loadCertFolder(settings.certPath, { clientCert: true });
    config.ssl = { ca: [tls.ca], cert: tls.cert, key: tls.key, rejectUnauthorized: true };
  } else if (settings.securityProtocol === "SASL_SSL") {
    const tls = settings.certPath
      ? loadCertFolder(settings.certPath, { clientCert: false })
      : undefined;
    config.ssl = tls ? { ca: [tls.ca], rejectUnauthorized: true } : true;
    if (!settings.sasl) throw new AppError("USAGE", "SASL_SSL needs a user name and password");
    config.sasl = {
      mechanism: "scram-sha-256",
      username: settings.sasl.username,
      password: settings.sasl.password,
    } as SASLOptions;
  }
  return new Kafka(config);
}

/** The links of an error: itself, then what it wraps (KafkaJS's `originalError`, then `cause`). */
function errorChain(error: unknown): Array<Record<string, unknown>> {
  const chain: Array<Record<string, unknown>> = [];
  let current = error;
  while (current && typeof current === "object" && chain.length < 10) {
    const link = current as Record<string, unknown>;
    if (chain.includes(link)) break;
    chain.push(link);
    current = link.originalError ?? link.cause;
  }
  return chain;
}

/**
 * Whether retrying can help, as KafkaJS declares it: every KafkaJS error carries `retriable`, and
 * the protocol's error table sets it per broker error code (MESSAGE_TOO_LARGE, INVALID_RECORD or
 * TOPIC_AUTHORIZATION_FAILED are not; NOT_LEADER_FOR_PARTITION is). The innermost link that says
 * decides, because KafkaJS wraps the real cause in a non-retriable "retries exceeded" error. An
 * error that does not say (a plain socket error) is retriable.
 */
export function isRetriableKafkaError(error: unknown): boolean {
  for (const link of errorChain(error).reverse()) {
    if (typeof link.retriable === "boolean") return link.retriable;
  }
  return true;
}

/**
 * Whether KafkaJS gave up finding the consumer group's coordinator: it asks every broker it knows
 * and, when none answers (all restarting), throws a non-retriable error, so its consumer crashes
 * without restarting. A member can rejoin once a broker is back.
 */
export function isCoordinatorNotFound(error: unknown): boolean {
  return chainValue(error, "name").includes("KafkaJSGroupCoordinatorNotFound");
}

/** First value of `key` along the error's chain (`code`, `name`, `type`). */
function chainValue(error: unknown, key: string): string[] {
  return errorChain(error).map((link) => link[key]).filter((v): v is string =>
    typeof v === "string"
  );
}

/**
 * Turns a KafkaJS error into an AppError with a one-line message naming the likely fix. The kind
 * comes from the error's structure where KafkaJS gives one (its class name, the socket's `code`);
 * TLS problems only from the text, because Deno's TLS layer reports certificate failures as
 * messages without codes. Whether the error is retriable comes from KafkaJS (see
 * {@linkcode isRetriableKafkaError}), never from the text.
 */
export function describeKafkaError(error: unknown, settings: KafkaSettings): AppError {
  if (error instanceof AppError) return error;
  const where = settings.brokers.join(",");
  const msg = messageOf(error);
  const names = chainValue(error, "name");
  const codes = chainValue(error, "code");
  const text = errorChain(error).map((link) => messageOf(link)).join(" ");
  const make = (code: ConstructorParameters<typeof AppError>[0], message: string) =>
    new AppError(code, message, { cause: error, retriable: isRetriableKafkaError(error) });
  if (codes.includes("ECONNREFUSED")) {
    return make(
      "KAFKA_UNREACHABLE",
      `cannot reach Kafka at ${where}: connection refused; check the host and port (Aiven shows them on the service overview)`,
    );
  }
  if (codes.some((c) => c === "ENOTFOUND" || c === "EAI_AGAIN") || /failed to lookup/i.test(text)) {
    return make("KAFKA_UNREACHABLE", `unknown Kafka host in ${where}; check --kafka-hostname`);
  }
  if (
    /certificate|self[- ]signed|CERT_|altnames|unable to verify/i.test(text) &&
    !/certificate required/i.test(text)
  ) {
    return make(
      "KAFKA_TLS",
      `Kafka broker certificate not trusted (${msg}); use the ca.pem of the same service in --cert-path`,
    );
  }
  if (/certificate required|handshake failure|bad certificate|unknown ca|alert/i.test(text)) {
    return make(
      "KAFKA_TLS",
      `Kafka at ${where} refused the client certificate (${msg}); use service.cert and service.key of this service`,
    );
  }
  if (names.includes("KafkaJSSASLAuthenticationError")) {
    return make(
      "KAFKA_AUTH",
      `Kafka at ${where} rejected the SASL user name or password; check them, and that the listener is SASL_SSL`,
    );
  }
  if (
    names.some((n) => n === "KafkaJSRequestTimeoutError" || n === "KafkaJSTimeout") ||
    /Connection timeout/.test(text)
  ) {
    return make(
      "TIMEOUT",
      `no answer from Kafka at ${where} within the connect timeout; check host, port, firewall and --security-protocol`,
    );
  }
  if (
    names.includes("KafkaJSConnectionClosedError") ||
    codes.some((c) => ["ECONNRESET", "EPIPE", "ERR_STREAM_WRITE_AFTER_END"].includes(c)) ||
    // a broker that ends the TLS session (no client certificate) can surface as a write after end
    /Connection closed|Not connected|socket hang up|write after end/i.test(text)
  ) {
    return make(
      "KAFKA_UNREACHABLE",
      `Kafka at ${where} closed the connection (${msg}); check --security-protocol (${settings.securityProtocol}), the port, and that the broker accepts the client certificate`,
    );
  }
  if (isCoordinatorNotFound(error)) {
    return make(
      "KAFKA",
      `no broker at ${where} answered as the group's coordinator; check that the brokers are up and that the user may use the consumer group`,
    );
  }
  return make("KAFKA", `Kafka error at ${where}: ${msg}`);
}

/** Runs `work`, failing with a TIMEOUT error when it takes longer than `ms`. */
export async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new AppError("TIMEOUT", `${what}: no answer within ${Math.round(ms / 1000)} s`)),
      ms,
    );
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Connects once with few retries and lists the topics: a wrong host, port, certificate or
 * password fails here within the connect timeout, with its own message rather than a time-out.
 */
export async function probeKafka(settings: KafkaSettings): Promise<string[]> {
  const admin = createKafka(settings, { clientId: "tickets-probe", retries: 1 }).admin();
  try {
    await withDeadline(
      admin.connect(),
      settings.connectTimeoutMs * 2 + 2_000,
      "connecting to Kafka",
    );
    return await admin.listTopics();
  } catch (error) {
    throw describeKafkaError(error, settings);
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/**
 * Creates `topic` with `partitions` partitions when it does not exist. Returns true if it was
 * created. The replication factor is the broker's default.
 */
export async function ensureTopic(
  kafka: Kafka,
  topic: string,
  partitions: number,
): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = await admin.listTopics();
    if (existing.includes(topic)) return false;
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: partitions }],
      waitForLeaders: true,
    });
    return created;
  } finally {
    await admin.disconnect();
  }
}

/** Kafka's rule for topic names. */
export function isValidTopicName(name: string): boolean {
  return /^[A-Za-z0-9._-]{1,249}$/.test(name) && name !== "." && name !== "..";
}

/** Options of {@linkcode readTopicToEnd}. */
export interface ReadToEndOptions {
  /** Client id shown in broker logs. @default {"tickets-reader"} */
  clientId?: string;
  /** Give up (TIMEOUT) after this long. @default {300000} */
  timeoutMs?: number;
}

/**
 * Reads every committed message of a topic, from each partition's log start up to its high
 * watermark as it was when the call began, with a throwaway consumer group, and calls
 * `onMessage` for each (in offset order within a partition). A partition is done when a fetch
 * reaches its high watermark, transaction markers and aborted messages included (KafkaJS never
 * hands those over, so waiting for the message at high - 1 could wait for ever). Returns how
 * many partitions the topic has.
 */
export async function readTopicToEnd(
  kafka: Kafka,
  topic: string,
  onMessage: (partition: number, message: KafkaMessage) => void,
  options: ReadToEndOptions = {},
): Promise<{ partitions: number }> {
  const admin = kafka.admin();
  await admin.connect();
  let offsets;
  try {
    offsets = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect().catch(() => {});
  }
  const remaining = new Map(
    offsets.filter((o) => BigInt(o.high) > BigInt(o.low)).map((o) => [o.partition, BigInt(o.high)]),
  );
  if (remaining.size === 0) return { partitions: offsets.length };
  const consumer = kafka.consumer({
    groupId: `${options.clientId ?? "tickets-reader"}-${crypto.randomUUID()}`,
    maxWaitTimeInMs: 100,
    maxBytesPerPartition: 4 * 1024 * 1024,
  });
  let done = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  const reached = (partition: number, lastOffset: string) => {
    const high = remaining.get(partition);
    if (high !== undefined && BigInt(lastOffset) + 1n >= high) remaining.delete(partition);
    if (remaining.size === 0) done();
  };
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    // fetches that held only markers or aborted messages reach eachBatch only as this event
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (payload.topic === topic && payload.batchSize === 0) {
        reached(payload.partition, payload.lastOffset);
      }
    });
    const running = consumer.run({
      autoCommit: false,
      eachBatch: ({ batch }) => {
        const high = remaining.get(batch.partition);
        if (high === undefined) return Promise.resolve();
        for (const m of batch.messages) {
          if (BigInt(m.offset) < high) onMessage(batch.partition, m);
        }
        reached(batch.partition, batch.lastOffset());
        return Promise.resolve();
      },
    });
    await withDeadline(
      Promise.race([finished, running.then(() => finished)]),
      options.timeoutMs ?? 300_000,
      `reading topic "${topic}" to its end`,
    );
  } finally {
    await consumer.disconnect().catch(() => {});
  }
  return { partitions: offsets.length };
}

/** Compression codecs KafkaJS ships with. */
export const COMPRESSIONS = ["none", "gzip"] as const;
/** Acknowledgement levels: all in-sync replicas, the leader, none. */
export const ACKS = ["all", "1", "0"] as const;
