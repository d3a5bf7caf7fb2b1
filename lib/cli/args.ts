/**
 * Command specs and argument parsing of every script: each returns fully validated options, or
 * undefined after printing `--help`.
 * @module
 */
import {
  type CommandSpec,
  type FlagValues,
  parseCommandLine,
  Problems,
  stringFlag,
} from "./cli.ts";
import { type Connection, CONNECTION_FLAGS, resolveConnection } from "./config.ts";
import { ACKS, COMPRESSIONS, isValidTopicName } from "../kafka/kafka.ts";
import type { ProducerOptions } from "../pipeline/producer.ts";
import {
  type ConsumerOptions,
  DEFAULT_SESSION_TIMEOUT_SECONDS,
  RESET_TO,
} from "../pipeline/consumer.ts";
import { checkIdentifier } from "../postgres/schema.ts";
import { DEFAULT_METRICS_LOG } from "../observe/metrics.ts";

/** Flags of the metrics history, shared by producer and consumer. */
const METRICS_FLAGS: CommandSpec["flags"] = {
  "metrics-log": {
    type: "string",
    description: "append run metrics (JSON lines) to this file",
    default: DEFAULT_METRICS_LOG,
  },
  "no-metrics-log": { type: "boolean", description: "do not write the metrics history" },
};

function metricsLogOf(values: FlagValues): string | undefined {
  return values["no-metrics-log"]
    ? undefined
    : stringFlag(values, "metrics-log") ?? DEFAULT_METRICS_LOG;
}

/** `db_setup.ts`. */
export const DB_SETUP_SPEC: CommandSpec = {
  name: "db_setup",
  summary: "create the ticket table and the pipeline's offsets and dead-letter tables (idempotent)",
  flags: {
    "table-name": { type: "string", description: "ticket table to create (required)" },
    "schema": {
      type: "string",
      description: "schema of the tables (created if missing)",
      default: "public",
    },
    ...pick(CONNECTION_FLAGS, [
      "creds",
      "postgres-uri",
      "database",
      "cert-path",
      "connect-timeout",
    ]),
  },
  examples: ["deno task db_setup --table-name movie_ticket"],
};

/** `producer.ts`. */
export const PRODUCER_SPEC: CommandSpec = {
  name: "producer",
  summary: "publish fake movie tickets as JSON to a Kafka topic",
  flags: {
    "topic-name": { type: "string", description: "topic to publish to (created if missing)" },
    "num": { type: "string", description: "number of tickets to publish", default: "10" },
    "continuous": { type: "boolean", description: "publish until Ctrl-C" },
    "seat-clash-rate": {
      type: "string",
      description: "share (0-1) of tickets that re-sell a seat already sold, to show SEAT_TAKEN",
      default: "0",
    },
    "seed": { type: "string", description: "make the run reproducible: same seed, same tickets" },
    "rate": { type: "string", description: "tickets per second", default: "as fast as possible" },
    "partitions": {
      type: "string",
      description: "partitions of the topic if it is created",
      default: "3",
    },
    "batch-size": { type: "string", description: "tickets per produce request", default: "1000" },
    "in-flight": {
      type: "string",
      description: "produce requests awaiting acknowledgement at once",
      default: "4",
    },
    "compression": { type: "string", description: COMPRESSIONS.join(" | "), default: "none" },
    "acks": { type: "string", description: ACKS.join(" | "), default: "all" },
    "send-timeout": {
      type: "string",
      description: "seconds to keep retrying a batch the broker does not acknowledge",
      default: "60",
    },
    ...METRICS_FLAGS,
    ...CONNECTION_FLAGS,
  },
  examples: ["deno task producer --cert-path ./certs --topic-name movie_app --num 1000"],
};

/** `consumer.ts`. */
export const CONSUMER_SPEC: CommandSpec = {
  name: "consumer",
  summary: "store tickets from a Kafka topic in PostgreSQL, exactly once",
  flags: {
    "topic-name": { type: "string", description: "topic to read" },
    "table-name": { type: "string", description: "ticket table (create it with db_setup)" },
    "schema": { type: "string", description: "schema of the tables", default: "public" },
    "group-id": {
      type: "string",
      description: "consumer group",
      default: "tickets-sink-<schema>-<table>",
    },
    "batch-size": {
      type: "string",
      description: "most messages written in one transaction",
      default: "5000",
    },
    "idle-timeout": {
      type: "string",
      description: "exit 0 once every partition is drained and nothing came for this many seconds",
      default: "run until stopped",
    },
    "max-messages": { type: "string", description: "exit 0 after this many messages" },
    "max-message-bytes": {
      type: "string",
      description: "larger messages become dead letters",
      default: "65536",
    },
    "fetch-max-bytes": {
      type: "string",
      description: "bytes fetched per partition per request",
      default: "1048576",
    },
    "fetch-max-wait": {
      type: "string",
      description: "ms the broker may wait to fill a fetch",
      default: "100",
    },
    "db-retry": {
      type: "string",
      description: "seconds to keep retrying a failing database",
      default: "300",
    },
    "session-timeout": {
      type: "string",
      description: "seconds without heartbeat before the group moves a member's partitions",
      default: "10",
    },
    "reset-offsets": {
      type: "string",
      description: "earliest | latest: first move the group's stored offsets to the log's " +
        "start or end (after the topic was recreated)",
    },
    ...METRICS_FLAGS,
    ...CONNECTION_FLAGS,
  },
  examples: [
    "deno task consumer --cert-path ./certs --topic-name movie_app --table-name movie_ticket",
  ],
};

function pick<T>(record: Record<string, T>, keys: string[]): Record<string, T> {
  return Object.fromEntries(keys.map((k) => [k, record[k]!]));
}

function checkTopic(problems: Problems, values: FlagValues): string {
  const topic = problems.required(values, "topic-name");
  if (topic && !isValidTopicName(topic)) {
    problems.add(
      `--topic-name "${
        topic.slice(0, 80)
      }" is not a Kafka topic name (letters, digits, . _ -; at most 249)`,
    );
  }
  return topic;
}

function checkName(problems: Problems, kind: string, value: string): void {
  if (value) problems.attempt(() => checkIdentifier(kind, value));
}

/** Options of db_setup. */
export interface DbSetupArgs {
  connection: Connection;
  table: string;
  schema: string;
}

/** Parses db_setup's command line. */
export function parseDbSetupArgs(args: string[]): DbSetupArgs | undefined {
  const values = parseCommandLine(DB_SETUP_SPEC, args);
  if (!values) return undefined;
  const problems = new Problems();
  const table = problems.required(values, "table-name");
  checkName(problems, "table name", table);
  const schema = stringFlag(values, "schema") ?? "public";
  checkName(problems, "schema name", schema);
  problems.throwIfAny();
  return { connection: resolveConnection(values, { postgres: true }), table, schema };
}

/** Parses producer's command line. */
export function parseProducerArgs(args: string[]): ProducerOptions | undefined {
  const values = parseCommandLine(PRODUCER_SPEC, args);
  if (!values) return undefined;
  const problems = new Problems();
  const topic = checkTopic(problems, values);
  const options: ProducerOptions = {
    kafka: undefined as never,
    topic,
    num: problems.integer(values, "num", 10, 1, 1_000_000_000),
    continuous: values.continuous === true,
    seatClashRate: problems.number(values, "seat-clash-rate", 0, 0, 1),
    seed: problems.integer(values, "seed", undefined, 0, Number.MAX_SAFE_INTEGER),
    rate: values.rate === undefined
      ? undefined
      : problems.number(values, "rate", undefined, 0.01, 10_000_000),
    partitions: problems.integer(values, "partitions", 3, 1, 10_000),
    batchSize: problems.integer(values, "batch-size", 1000, 1, 100_000),
    inFlight: problems.integer(values, "in-flight", 4, 1, 64),
    compression: problems.choice(values, "compression", "none", COMPRESSIONS),
    acks: problems.choice(values, "acks", "all", ACKS),
    sendTimeoutSeconds: problems.number(values, "send-timeout", 60, 0, 86_400),
    metricsLog: metricsLogOf(values),
  };
  problems.throwIfAny();
  options.kafka = resolveConnection(values, { kafka: true }).kafka;
  return options;
}

/** Parses consumer's command line. */
export function parseConsumerArgs(args: string[]): ConsumerOptions | undefined {
  const values = parseCommandLine(CONSUMER_SPEC, args);
  if (!values) return undefined;
  const problems = new Problems();
  const topic = checkTopic(problems, values);
  const table = problems.required(values, "table-name");
  checkName(problems, "table name", table);
  const schema = stringFlag(values, "schema") ?? "public";
  checkName(problems, "schema name", schema);
  const groupId = stringFlag(values, "group-id");
  if (groupId !== undefined && !/^[A-Za-z0-9._-]{1,200}$/.test(groupId)) {
    problems.add("--group-id must be 1-200 letters, digits, . _ or -");
  }
  const options: ConsumerOptions = {
    connection: undefined as never,
    topic,
    table,
    schema,
    groupId,
    batchSize: problems.integer(values, "batch-size", 5000, 1, 100_000),
    idleTimeoutSeconds: problems.number(values, "idle-timeout", undefined, 0.1, 86_400 * 365),
    maxMessages: problems.integer(values, "max-messages", undefined, 1, Number.MAX_SAFE_INTEGER),
    maxMessageBytes: problems.integer(values, "max-message-bytes", 65_536, 64, 100 * 1024 * 1024),
    maxBytesPerPartition: problems.integer(
      values,
      "fetch-max-bytes",
      1024 * 1024,
      1024,
      256 * 1024 * 1024,
    ),
    maxWaitTimeMs: problems.integer(values, "fetch-max-wait", 100, 0, 60_000),
    dbRetrySeconds: problems.number(values, "db-retry", 300, 0, 86_400),
    sessionTimeoutSeconds: problems.number(
      values,
      "session-timeout",
      DEFAULT_SESSION_TIMEOUT_SECONDS,
      6,
      3_600,
    ),
    resetOffsets: values["reset-offsets"] === undefined
      ? undefined
      : problems.choice(values, "reset-offsets", "earliest", RESET_TO),
    metricsLog: metricsLogOf(values),
  };
  problems.throwIfAny();
  options.connection = resolveConnection(values, { kafka: true, postgres: true });
  return options;
}
