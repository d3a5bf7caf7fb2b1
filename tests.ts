/** The numbered self-test menu (interactive on a terminal; `tests.ts 6` runs all without a prompt). */
import { exitWith } from "./lib/errors.ts";
import { selfTest } from "./lib/selftest.ts";

/** Runs the menu with command-line arguments; returns the exit code. */
export function main(args: string[]): Promise<number> {
  return selfTest(args);
}

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
