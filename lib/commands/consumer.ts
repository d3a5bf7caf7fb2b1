/**
 * The `consumer` command: flags to stored tickets (it loads no generator and no faker).
 * @module
 */
import { defineCommand, parseCommandLine } from "../cli/cli.ts";
import { CONNECTION_FLAGS, resolveConnection } from "../config/config.ts";
import {
  CONSUMER_DEFAULTS,
  type ConsumerOptions,
  formatConsumerSummary,
  RESET_TO,
  runConsumer,
} from "../pipeline/consumer.ts";
import { untilSignal } from "../signals.ts";
import { METRICS_FLAGS, metricsEndpointOf, metricsLogOf } from "../observe/metrics.ts";
import { PIPELINE_FLAGS } from "./flags.ts";

/** `consumer.ts`. */
export const CONSUMER_SPEC = defineCommand({
  name: "consumer",
  summary: "store tickets from a Kafka topic in PostgreSQL, exactly once",
  flags: {
    "topic-name": { ...PIPELINE_FLAGS["topic-name"], description: "topic to read" },
    "table-name": {
      ...PIPELINE_FLAGS["table-name"],
      description: "ticket table (create it with db_setup)",
    },
    "schema": PIPELINE_FLAGS["schema"],
    "group-id": PIPELINE_FLAGS["group-id"],
    "batch-size": {
      type: "integer",
      description: "most messages written in one transaction",
      default: CONSUMER_DEFAULTS.batchSize,
      min: 1,
      max: 100_000,
    },
    "idle-timeout": {
      type: "number",
      description: "exit 0 once every partition is drained and nothing came for this many seconds",
      defaultLabel: "run until stopped",
      min: 0.1,
      max: 86_400 * 365,
    },
    "max-messages": {
      type: "integer",
      description: "exit 0 after this many messages",
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
    },
    "max-message-bytes": {
      type: "integer",
      description: "larger messages become dead letters",
      default: CONSUMER_DEFAULTS.maxMessageBytes,
      min: 64,
      max: 100 * 1024 * 1024,
    },
    "fetch-max-bytes": {
      type: "integer",
      description: "bytes fetched per partition per request",
      default: CONSUMER_DEFAULTS.maxBytesPerPartition,
      min: 1024,
      max: 256 * 1024 * 1024,
    },
    "fetch-max-wait": {
      type: "integer",
      description: "ms the broker may wait to fill a fetch",
      default: CONSUMER_DEFAULTS.maxWaitTimeMs,
      min: 0,
      max: 60_000,
    },
    "db-retry": {
      type: "number",
      description: "seconds to keep retrying a failing database",
      default: CONSUMER_DEFAULTS.dbRetrySeconds,
      min: 0,
      max: 86_400,
    },
    "session-timeout": {
      type: "number",
      description: "seconds without heartbeat before the group moves a member's partitions",
      default: CONSUMER_DEFAULTS.sessionTimeoutSeconds,
      min: 6,
      max: 3_600,
    },
    "reset-offsets": {
      type: "choice",
      description: "first move the group's stored offsets to the log's start or end " +
        "(after the topic was recreated)",
      choices: RESET_TO,
    },
    ...METRICS_FLAGS,
    ...CONNECTION_FLAGS,
  },
  examples: [
    "deno task consumer --cert-path ./certs --topic-name movie_app --table-name movie_ticket",
  ],
});

/** Parses consumer's command line: validated options, or undefined after `--help`. */
export function parseConsumerArgs(args: string[]): ConsumerOptions | undefined {
  const values = parseCommandLine(CONSUMER_SPEC, args);
  if (!values) return undefined;
  return {
    connection: resolveConnection(values, { kafka: true, postgres: true }),
    topic: values["topic-name"],
    table: values["table-name"],
    schema: values.schema,
    groupId: values["group-id"],
    batchSize: values["batch-size"],
    idleTimeoutSeconds: values["idle-timeout"],
    maxMessages: values["max-messages"],
    maxMessageBytes: values["max-message-bytes"],
    maxBytesPerPartition: values["fetch-max-bytes"],
    maxWaitTimeMs: values["fetch-max-wait"],
    dbRetrySeconds: values["db-retry"],
    sessionTimeoutSeconds: values["session-timeout"],
    resetOffsets: values["reset-offsets"],
    metricsLog: metricsLogOf(values),
    prometheus: metricsEndpointOf(values),
  };
}

/** `consumer`: stores tickets exactly once. */
export async function run(args: string[]): Promise<number> {
  const options = parseConsumerArgs(args);
  if (!options) return 0;
  const summary = await untilSignal((signal) => runConsumer({ ...options, signal }));
  console.log(formatConsumerSummary(summary));
  return 0;
}
