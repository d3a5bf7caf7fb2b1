/**
 * The `producer` command: flags to published tickets.
 * @module
 */
import { parseProducerArgs } from "../cli/args.ts";
import { formatProducerSummary, runProducer } from "../pipeline/producer.ts";
import { untilSignal } from "../signals.ts";

/** `producer`: publishes generated tickets. */
export async function run(args: string[]): Promise<number> {
  const options = parseProducerArgs(args);
  if (!options) return 0;
  const summary = await untilSignal((signal) => runProducer({ ...options, signal }));
  console.log(formatProducerSummary(summary));
  return 0;
}
