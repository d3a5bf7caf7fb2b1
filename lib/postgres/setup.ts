/**
 * Creates the pipeline's tables: the ticket table, offsets, dead letters and conflicts.
 * @module
 */
import type { Connection } from "../config/config.ts";
import { createPool } from "./postgres.ts";
import { describePgError } from "./postgres.ts";
import { qualify, schemaStatements, type TableNames } from "./schema.ts";

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
