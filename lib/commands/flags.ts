/**
 * Flags shared by several commands: the pipeline's names (topic, ticket table, schema, consumer
 * group). The other shared groups live with the code that reads them: CONNECTION_FLAGS in
 * lib/config/config.ts, METRICS_FLAGS in lib/observe/metrics.ts. A command spreads a group into its
 * spec and may override a flag's description or `required`:
 * `"topic-name": { ...PIPELINE_FLAGS["topic-name"], description: "topic to read" }`.
 * @module
 */
import { defineFlags } from "../cli/cli.ts";
import { AppError } from "../errors.ts";
import { isValidTopicName } from "../kafka/kafka.ts";
import { defaultGroupId } from "../pipeline/consumer.ts";
import { checkIdentifier } from "../postgres/schema.ts";

/** Schema of the pipeline's tables when `--schema` is not given. */
export const DEFAULT_SCHEMA = "public";

/** Throws a USAGE error when `topic`, given to `--FLAG`, is not a Kafka topic name. */
export function checkTopicFlag(flag: string, topic: string): void {
  if (isValidTopicName(topic)) return;
  throw new AppError(
    "USAGE",
    `--${flag} "${
      topic.slice(0, 80)
    }" is not a Kafka topic name (letters, digits, . _ -; at most 249)`,
  );
}

/** The pipeline's names, each checked as it is parsed; topic and table are required. */
export const PIPELINE_FLAGS = defineFlags({
  "topic-name": {
    type: "string",
    description: "Kafka topic",
    required: true,
    check: (topic) => checkTopicFlag("topic-name", topic),
  },
  "table-name": {
    type: "string",
    description: "ticket table",
    required: true,
    check: (table) => void checkIdentifier("table name", table),
  },
  "schema": {
    type: "string",
    description: "schema of the tables",
    default: DEFAULT_SCHEMA,
    check: (schema) => void checkIdentifier("schema name", schema),
  },
  "group-id": {
    type: "string",
    description: "consumer group",
    defaultLabel: defaultGroupId("<schema>", "<table>"),
    check: (group) => {
      if (!/^[A-Za-z0-9._-]{1,200}$/.test(group)) {
        throw new AppError("USAGE", "--group-id must be 1-200 letters, digits, . _ or -");
      }
    },
  },
});
