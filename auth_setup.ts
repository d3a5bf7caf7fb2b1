/** Saves Kafka and PostgreSQL connection settings to a creds file; `--check` tests them. */
import { authSetup } from "./lib/auth_setup.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs auth_setup with command-line arguments; returns the exit code. */
export function main(args: string[]): Promise<number> {
  return authSetup(args);
}

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
