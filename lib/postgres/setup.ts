/**
 * Creates the pipeline's tables: the ticket table, offsets, dead letters and conflicts.
 * @module
 */
import type { Connection } from "../config/config.ts";
import { AppError, messageOf } from "../errors.ts";
import { createPool, describePgError, sqlStateOf } from "./postgres.ts";
import { qualify, schemaProbe, schemaStatements, type TableNames } from "./schema.ts";

/** Creates the schema and tables if missing (idempotent). Returns the qualified ticket table. */
export async function setupDatabase(connection: Connection, names: TableNames): Promise<string> {
  const statements = schemaStatements(names); // checks the names before any connection
  const db = await createPool({
    uri: connection.postgresUri,
    certPath: connection.kafka.certPath,
    connectTimeoutMs: connection.connectTimeoutMs,
    max: 1,
    applicationName: "tickets-db-setup",
  });
  try {
    const client = await db.pool.connect();
    try {
      await client.query(db.begin);
      // Two db_setup runs at once must not race on CREATE ... IF NOT EXISTS.
      await client.query("SELECT pg_advisory_xact_lock(hashtext('movie-tickets-db-setup'))");
      for (const sql of statements) await client.query(sql);
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      throw describePgError(error, db.target);
    } finally {
      client.release();
    }
  } finally {
    await db.pool.end();
  }
  return qualify(names).tickets;
}

/** SQLSTATEs of a table or column that does not exist. */
const MISSING = ["42P01", "42703"];

/**
 * Fails with the way forward when the pipeline's tables lack a table or column this version
 * writes: they were made by an older version, and `db_setup` brings them up to date.
 */
export async function checkTables(
  pool: { query(text: string): Promise<unknown> },
  names: TableNames,
): Promise<void> {
  try {
    await pool.query(schemaProbe(names));
  } catch (error) {
    if (!MISSING.includes(sqlStateOf(error) ?? "")) throw error;
    const flags = `--table-name ${names.table}${
      names.schema === "public" ? "" : ` --schema ${names.schema}`
    }`;
    throw new AppError(
      "DB",
      `the tables of ${names.schema}.${names.table} are not this version's (${
        messageOf(error)
      }): run db_setup.ts ${flags} to create or bring them up to date`,
      { cause: error, sqlState: sqlStateOf(error) },
    );
  }
}
