/** Creates the ticket table and the pipeline's own tables. */
import { COMMANDS } from "./lib/commands.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs `db_setup` with command-line arguments; returns the exit code. */
export const main = COMMANDS.db_setup;

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
