/** Lists dead letters, or publishes chosen ones again after a fix: `dlq list | replay`. */
import { deadLetters } from "./lib/dlq.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs the dead-letter tool with command-line arguments; returns the exit code. */
export function main(args: string[]): Promise<number> {
  return deadLetters(args);
}

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
