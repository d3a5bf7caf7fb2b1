/** Turns the metrics history into one self-contained HTML page and prints a short summary. */
import { COMMANDS } from "./lib/commands.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs `report` with command-line arguments; returns the exit code. */
export const main = COMMANDS.report;

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
