/** Checks that a table holds exactly the tickets of a topic. */
import { exitWith } from "./lib/errors.ts";
import { verify } from "./lib/verify.ts";

/** Runs verify with command-line arguments; returns the exit code. */
export function main(args: string[]): Promise<number> {
  return verify(args);
}

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
