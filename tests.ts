/** The numbered self-test menu (interactive on a terminal; `tests.ts 6` runs all without a prompt). */
import { COMMANDS } from "./lib/commands.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs `tests` with command-line arguments; returns the exit code. */
export const main = COMMANDS.tests;

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
