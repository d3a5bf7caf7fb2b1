/** Stores tickets from a Kafka topic in PostgreSQL, exactly once. */
import { parseConsumerArgs } from "./lib/args.ts";
import { formatConsumerSummary, runConsumer } from "./lib/consumer.ts";
import { exitWith } from "./lib/errors.ts";
import { shutdownSignal } from "./lib/signals.ts";

/** Runs the consumer with command-line arguments; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const options = parseConsumerArgs(args);
  if (!options) return 0;
  const shutdown = shutdownSignal();
  try {
    const summary = await runConsumer({ ...options, signal: shutdown.signal });
    console.log(formatConsumerSummary(summary));
    return 0;
  } finally {
    shutdown.dispose();
  }
}

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
