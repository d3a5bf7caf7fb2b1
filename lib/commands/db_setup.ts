/**
 * The `db_setup` command: flags to tables.
 * @module
 */
import { parseDbSetupArgs } from "../cli/args.ts";
import { setupDatabase } from "../postgres/setup.ts";

/** `db_setup`: creates the ticket table and the pipeline's own tables. */
export async function run(args: string[]): Promise<number> {
  const options = parseDbSetupArgs(args);
  if (!options) return 0;
  const table = await setupDatabase(options.connection, options);
  console.log(`db_setup: ${table} and the pipeline tables are ready`);
  return 0;
}
