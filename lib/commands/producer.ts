/**
 * The `producer` command: flags to published tickets.
 * @module
 */
import { defineCommand, parseCommandLine } from "../cli/cli.ts";
import { CONNECTION_FLAGS, resolveConnection } from "../config/config.ts";
import { ACKS, COMPRESSIONS } from "../kafka/kafka.ts";
import {
  formatProducerSummary,
  PRODUCER_DEFAULTS,
  type ProducerOptions,
  runProducer,
} from "../pipeline/producer.ts";
import { untilSignal } from "../signals.ts";
import { METRICS_FLAGS, metricsEndpointOf, metricsLogOf } from "../observe/metrics.ts";
import { PIPELINE_FLAGS } from "./flags.ts";

/** `producer.ts`. */
export const PRODUCER_SPEC = defineCommand({
  name: "producer",
  summary: "publish fake movie tickets as JSON to a Kafka topic",
  flags: {
    "topic-name": {
      ...PIPELINE_FLAGS["topic-name"],
      description: "topic to publish to (created if missing)",
    },
    "num": {
      type: "integer",
      description: "number of tickets to publish",
      default: PRODUCER_DEFAULTS.num,
      min: 1,
      max: 1_000_000_000,
    },
    "continuous": { type: "boolean", description: "publish until Ctrl-C" },
    "seat-clash-rate": {
      type: "number",
      description: "share of tickets that re-sell a seat already sold, to show SEAT_TAKEN",
      default: PRODUCER_DEFAULTS.seatClashRate,
      min: 0,
      max: 1,
    },
    "cancel-rate": {
      type: "number",
      description: "share of the tickets cancelled later in the run (a cancel message each, " +
        "sent once the purchase is acknowledged)",
      default: PRODUCER_DEFAULTS.cancelRate,
      min: 0,
      max: 1,
    },
    "poison-rate": {
      type: "number",
      description: "share of the messages replaced by named bad data with known outcomes " +
        "(fixtures/poison.json, seat clashes, cancels of unknown tickets, double cancels)",
      default: PRODUCER_DEFAULTS.poisonRate,
      min: 0,
      max: 1,
    },
    "manifest": {
      type: "string",
      description: "write every acknowledged message's topic, partition, offset, key and " +
        "expected outcome to this file (JSON Lines; check it with verify --manifest); " +
        "`deno task producer` may write only under logs/",
    },
    "seed": {
      type: "integer",
      description: "make the run reproducible: same seed, same tickets",
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
    },
    "rate": {
      type: "number",
      description: "tickets per second",
      defaultLabel: "as fast as possible",
      min: 0.01,
      max: 10_000_000,
    },
    "partitions": {
      type: "integer",
      description: "partitions of the topic if it is created",
      default: PRODUCER_DEFAULTS.partitions,
      min: 1,
      max: 10_000,
    },
    "batch-size": {
      type: "integer",
      description: "tickets per produce request",
      default: PRODUCER_DEFAULTS.batchSize,
      min: 1,
      max: 100_000,
    },
    "in-flight": {
      type: "integer",
      description: "produce requests awaiting acknowledgement at once",
      default: PRODUCER_DEFAULTS.inFlight,
      min: 1,
      max: 64,
    },
    "compression": {
      type: "choice",
      description: "compression of each produce request",
      choices: COMPRESSIONS,
      default: PRODUCER_DEFAULTS.compression,
    },
    "acks": {
      type: "choice",
      description: "replicas that must acknowledge a produce request (all, the leader, none)",
      choices: ACKS,
      default: PRODUCER_DEFAULTS.acks,
    },
    "send-timeout": {
      type: "number",
      description: "seconds to keep retrying a batch the broker does not acknowledge",
      default: PRODUCER_DEFAULTS.sendTimeoutSeconds,
      min: 0,
      max: 86_400,
    },
    ...METRICS_FLAGS,
    ...CONNECTION_FLAGS,
  },
  examples: [
    "deno task producer --cert-path ./certs --topic-name movie_app --num 1000",
    "deno task producer --topic-name movie_app --num 10000 --seed 7 --cancel-rate 0.1 " +
    "--poison-rate 0.05 --manifest logs/manifest.jsonl",
  ],
});

/** Parses producer's command line: validated options, or undefined after `--help`. */
export function parseProducerArgs(args: string[]): ProducerOptions | undefined {
  const values = parseCommandLine(PRODUCER_SPEC, args);
  if (!values) return undefined;
  return {
    kafka: resolveConnection(values, { kafka: true }).kafka,
    topic: values["topic-name"],
    num: values.num,
    continuous: values.continuous,
    seatClashRate: values["seat-clash-rate"],
    cancelRate: values["cancel-rate"],
    poisonRate: values["poison-rate"],
    manifest: values.manifest,
    seed: values.seed,
    rate: values.rate,
    partitions: values.partitions,
    batchSize: values["batch-size"],
    inFlight: values["in-flight"],
    compression: values.compression,
    acks: values.acks,
    sendTimeoutSeconds: values["send-timeout"],
    metricsLog: metricsLogOf(values),
    prometheus: metricsEndpointOf(values),
  };
}

/** `producer`: publishes generated tickets. */
export async function run(args: string[]): Promise<number> {
  const options = parseProducerArgs(args);
  if (!options) return 0;
  const summary = await untilSignal((signal) => runProducer({ ...options, signal }));
  console.log(formatProducerSummary(summary));
  return 0;
}
