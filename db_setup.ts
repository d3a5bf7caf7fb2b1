/** Creates the ticket table and the pipeline's own tables. */
import { parseDbSetupArgs } from "./lib/args.ts";
import { setupDatabase } from "./lib/db_setup.ts";
import { exitWith } from "./lib/errors.ts";

/** Runs db_setup with command-line arguments; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const options = parseDbSetupArgs(args);
  if (!options) return 0;
  const table = await setupDatabase(options.connection, options);
  console.log(`db_setup: ${table} and the pipeline tables are ready`);
  return 0;
}

if (import.meta.main) Deno.exit(await exitWith(main, Deno.args));
