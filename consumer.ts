/** Stores tickets from a Kafka topic in PostgreSQL, exactly once. */
import { COMMANDS } from "./lib/commands.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs `consumer` with command-line arguments; returns the exit code. */
export const main = COMMANDS.consumer;

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
