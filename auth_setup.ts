/** Saves Kafka and PostgreSQL connection settings to a creds file; `--check` tests them. */
import { COMMANDS } from "./lib/commands.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs `auth_setup` with command-line arguments; returns the exit code. */
export const main = COMMANDS.auth_setup;

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
