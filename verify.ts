/** Checks that a table holds exactly the tickets of a topic. */
import { COMMANDS } from "./lib/commands.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs `verify` with command-line arguments; returns the exit code. */
export const main = COMMANDS.verify;

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
