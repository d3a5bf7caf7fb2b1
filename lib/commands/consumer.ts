/**
 * The `consumer` command: flags to stored tickets (it loads no generator and no faker).
 * @module
 */
import { parseConsumerArgs } from "../cli/args.ts";
import { formatConsumerSummary, runConsumer } from "../pipeline/consumer.ts";
import { untilSignal } from "../signals.ts";

/** `consumer`: stores tickets exactly once. */
export async function run(args: string[]): Promise<number> {
  const options = parseConsumerArgs(args);
  if (!options) return 0;
  const summary = await untilSignal((signal) => runConsumer({ ...options, signal }));
  console.log(formatConsumerSummary(summary));
  return 0;
}
