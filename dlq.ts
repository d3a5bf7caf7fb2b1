/** Lists dead letters, or publishes chosen ones again after a fix: `dlq list | replay`. */
import { COMMANDS } from "./lib/commands.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs `dlq` with command-line arguments; returns the exit code. */
export const main = COMMANDS.dlq;

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
