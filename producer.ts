/** Publishes generated movie tickets to a Kafka topic. */
import { COMMANDS } from "./lib/commands.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs `producer` with command-line arguments; returns the exit code. */
export const main = COMMANDS.producer;

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
