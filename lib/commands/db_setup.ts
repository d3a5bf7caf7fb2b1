/**
 * The `db_setup` command: flags to tables.
 * @module
 */
import { defineCommand, parseCommandLine } from "../cli/cli.ts";
import { CONNECTION_FLAGS, resolveConnection } from "../config/config.ts";
import { setupDatabase } from "../postgres/setup.ts";
import { PIPELINE_FLAGS } from "./flags.ts";

/** `db_setup.ts`. */
export const DB_SETUP_SPEC = defineCommand({
  name: "db_setup",
  summary: "create the ticket table and the pipeline's offsets and dead-letter tables (idempotent)",
  flags: {
    "table-name": { ...PIPELINE_FLAGS["table-name"], description: "ticket table to create" },
    "schema": {
      ...PIPELINE_FLAGS["schema"],
      description: "schema of the tables (created if missing)",
    },
    "creds": CONNECTION_FLAGS["creds"],
    "postgres-uri": CONNECTION_FLAGS["postgres-uri"],
    "database": CONNECTION_FLAGS["database"],
    "cert-path": CONNECTION_FLAGS["cert-path"],
    "connect-timeout": CONNECTION_FLAGS["connect-timeout"],
  },
  examples: ["deno task db_setup --table-name movie_ticket"],
});

/** `db_setup`: creates the ticket table and the pipeline's own tables. */
export async function run(args: string[]): Promise<number> {
  const values = parseCommandLine(DB_SETUP_SPEC, args);
  if (!values) return 0;
  const connection = resolveConnection(values, { postgres: true });
  const table = await setupDatabase(connection, {
    table: values["table-name"],
    schema: values.schema,
  });
  console.log(`db_setup: ${table} and the pipeline tables are ready`);
  return 0;
}
