/** Publishes generated movie tickets to a Kafka topic. */
import { parseProducerArgs } from "./lib/args.ts";
import { exitWith } from "./lib/errors.ts";
import { formatProducerSummary, runProducer } from "./lib/producer.ts";
import { shutdownSignal } from "./lib/signals.ts";

/** Runs the producer with command-line arguments; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const options = parseProducerArgs(args);
  if (!options) return 0;
  const shutdown = shutdownSignal();
  try {
    const summary = await runProducer({ ...options, signal: shutdown.signal });
    console.log(formatProducerSummary(summary));
    return 0;
  } finally {
    shutdown.dispose();
  }
}

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
