/**
 * PostgreSQL pool factory (TLS verified against the service CA or, with `sslrootcert=system`, the
 * system's CAs; libpq sslmode semantics) and the translation of driver errors into one-line
 * messages that name the fix.
 * @module
 */
import pg from "pg";
import { join } from "node:path";
import { type ConnectionOptions, getCACertificates } from "node:tls";
import { AppError, messageOf } from "../errors.ts";
import { log, registerSecret } from "../log.ts";
import { describeTarget, parsePostgresUri, type PostgresTarget } from "../config/postgres_uri.ts";
import { CERT_FILES } from "../config/tls.ts";

export type { PoolClient } from "pg";

/** Options of {@linkcode createPool}. */
export interface PoolOptions {
  /** PostgreSQL URI; its `sslmode` and `sslrootcert` are honoured. */
  uri: string;
  /**
   * Cert folder whose `ca.pem` verifies the server (Aiven projects share one CA); not read with
   * `sslrootcert`, neither a file nor `system`.
   */
  certPath?: string;
  /** Milliseconds to wait for a connection. @default {10000} */
  connectTimeoutMs?: number;
  /** Largest number of connections. @default {4} */
  max?: number;
  /** Shown in pg_stat_activity. @default {"movie-tickets"} */
  applicationName?: string;
  /**
   * The server ends a transaction left idle this long (a frozen or partitioned client), so its
   * locks cannot block the other consumers for ever; transactions begun with the pool's `begin`.
   * @default {30000}
   */
  idleInTransactionTimeoutMs?: number;
  /**
   * A statement waiting this long for a lock fails with lock_not_available (55P03), so the caller
   * can end what holds it (see `endStalledCopies` in sink.ts); transactions begun with the pool's
   * `begin`. @default {no limit}
   */
  lockTimeoutMs?: number;
}

/** A connection pool plus the target it points at (without password). */
export interface Database {
  pool: pg.Pool;
  target: PostgresTarget;
  /** `user@host:port/db`, safe to print. */
  label: string;
  /**
   * What starts a transaction on this pool: BEGIN and the pool's timeouts as `SET LOCAL` (see
   * {@linkcode transactionStart}). No parameters: it may head a multi-statement Query.
   */
  begin: string;
  /** The lock timeout its transactions have, if any. */
  lockTimeoutMs?: number;
}

/**
 * BEGIN, then the idle-in-transaction and lock timeouts for that transaction alone. Set in each
 * transaction rather than once per session (a startup parameter or a SET after connecting) so
 * that they hold behind a connection pooler: PgBouncer refuses startup parameters it does not
 * know, and in its transaction mode a session's SET lands on whichever server connection the
 * statement got, leaving ours without it and changing another client's.
 */
export function transactionStart(
  options: Pick<PoolOptions, "idleInTransactionTimeoutMs" | "lockTimeoutMs">,
): string {
  const ms = (value: number) => `'${Math.max(0, Math.round(value))}ms'`;
  let begin = `BEGIN; SET LOCAL idle_in_transaction_session_timeout = ${
    ms(options.idleInTransactionTimeoutMs ?? 30_000)
  }`;
  if (options.lockTimeoutMs !== undefined) {
    begin += `; SET LOCAL lock_timeout = ${ms(options.lockTimeoutMs)}`;
  }
  return begin;
}

function readCa(target: PostgresTarget, certPath: string | undefined): string | undefined {
  const path = target.sslrootcert ?? (certPath ? join(certPath, CERT_FILES.ca) : undefined);
  if (!path) return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch {
    if (target.sslrootcert) {
      throw new AppError("MISSING_CERT", `sslrootcert file ${path} cannot be read`);
    }
    return undefined; // no ca.pem in the cert folder: fall back to the system's CAs
  }
}

/**
 * The operating system's trusted CAs (OpenSSL's default paths, `SSL_CERT_FILE` honoured), as libpq
 * loads them for `sslrootcert=system`; not the runtime's bundled list, and never `ca.pem`.
 */
function systemCas(): string[] {
  let cas: string[];
  try {
    cas = getCACertificates("system");
  } catch (error) {
    throw new AppError(
      "MISSING_CERT",
      `sslrootcert=system, but the system's trusted CAs cannot be read (${
        messageOf(error)
      }); check SSL_CERT_FILE`,
      { cause: error },
    );
  }
  if (cas.length === 0) {
    throw new AppError(
      "MISSING_CERT",
      "sslrootcert=system, but this system has no trusted CAs; install them (ca-certificates) or set SSL_CERT_FILE",
    );
  }
  return cas;
}

/**
 * TLS options for a target. Whatever the mode, an encrypted connection always verifies the
 * server's chain (verification is never switched off): against the CA when one is given, else the
 * runtime's default CAs (Deno's bundled list; the system's with DENO_TLS_CA_STORE=system). `require` and `verify-ca` skip the host-name check when a CA is given (as libpq
 * does); `verify-full` always checks it. `sslrootcert=system` is libpq's: the system's CAs, and
 * always `verify-full` (the URI parser refuses a weaker mode with it).
 */
export function tlsOptions(target: PostgresTarget, certPath?: string): ConnectionOptions | false {
  if (target.sslmode === "disable") return false;
  if (target.sslrootcert === "system") {
    return { rejectUnauthorized: true, servername: undefined, ca: systemCas() };
  }
  const ca = readCa(target, certPath);
  if (target.sslmode === "verify-ca" && !ca) {
    throw new AppError(
      "MISSING_CERT",
      "sslmode=verify-ca needs a CA: pass --cert-path with ca.pem or sslrootcert=FILE",
    );
  }
  const options: ConnectionOptions = { rejectUnauthorized: true, servername: undefined };
  if (ca) options.ca = ca;
  if (target.sslmode !== "verify-full" && ca) options.checkServerIdentity = () => undefined;
  return options;
}

/** Turns a driver or socket error into an AppError with a one-line message naming the fix. */
export function describePgError(error: unknown, target: PostgresTarget): AppError {
  if (error instanceof AppError) return error;
  const e = error as { code?: string; message?: string };
  const where = `${target.host}:${target.port}`;
  const msg = messageOf(error);
  const code = e.code ?? "";
  if (code === "ECONNREFUSED") {
    return new AppError(
      "DB_UNREACHABLE",
      `cannot reach PostgreSQL at ${where}: connection refused; is the server running and the port right?`,
      { cause: error },
    );
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || /getaddrinfo|failed to lookup/i.test(msg)) {
    return new AppError(
      "DB_UNREACHABLE",
      `unknown PostgreSQL host "${target.host}"; check the host in the PostgreSQL URI`,
      { cause: error },
    );
  }
  if (code === "28P01") {
    return new AppError(
      "DB_AUTH",
      `PostgreSQL rejected the password of user "${target.user}"; check the password in ${
        target.password === undefined
          ? "PGPASSWORD or ~/.pgpass (PGPASSFILE)"
          : "the PostgreSQL URI"
      }`,
      { cause: error },
    );
  }
  if (/client password must be a string/i.test(msg)) {
    return new AppError(
      "DB_AUTH",
      `PostgreSQL wants a password for user "${target.user}" and none was given: set PGPASSWORD, or add "${target.host}:${target.port}:${target.database}:${target.user}:PASSWORD" to ~/.pgpass (or the file PGPASSFILE names; mode 600)`,
      { cause: error },
    );
  }
  if (code === "28000") {
    return new AppError(
      "DB_AUTH",
      `PostgreSQL refused the connection of user "${target.user}" (${msg}); check sslmode and the user`,
      { cause: error },
    );
  }
  if (code === "3D000") {
    return new AppError(
      "DB",
      `database "${target.database}" does not exist on ${where}; check the database in the PostgreSQL URI`,
      { cause: error },
    );
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID" || /altnames/i.test(msg)) {
    return new AppError(
      "DB_TLS",
      `PostgreSQL server certificate is not for host "${target.host}" (${msg}); sslmode=${target.sslmode} checks the host name: connect with a name the certificate lists`,
      { cause: error },
    );
  }
  if (/certificate|self[- ]signed|CERT_|verify/i.test(code + " " + msg)) {
    const fix = target.sslrootcert === "system"
      ? "sslrootcert=system trusts only the system's CAs: add the service CA to the system's trust store, or use sslrootcert=FILE"
      : "pass the service CA (ca.pem in --cert-path, or sslrootcert=FILE in the URI)";
    return new AppError("DB_TLS", `PostgreSQL server certificate not trusted (${msg}); ${fix}`, {
      cause: error,
    });
  }
  if (/does not support SSL/i.test(msg)) {
    return new AppError(
      "DB_TLS",
      `PostgreSQL at ${where} does not accept SSL; use sslmode=disable only on a trusted network`,
      { cause: error },
    );
  }
  if (/timeout/i.test(msg)) {
    return new AppError(
      "TIMEOUT",
      `no answer from PostgreSQL at ${where} within the connect timeout; check host, port and firewall`,
      { cause: error },
    );
  }
  return new AppError("DB", `PostgreSQL error at ${describeTarget(target)}: ${msg}`, {
    cause: error,
  });
}

/** PostgreSQL keeps the first 63 bytes of a name (NAMEDATALEN - 1), application_name included. */
export const NAME_BYTES = 63;

/**
 * A session name as PostgreSQL stores it (`pg_stat_activity.application_name`): cut to 63 bytes
 * of UTF-8 at a character's boundary. Compare with this, never with the name as given.
 * `maxBytes` cuts shorter, to leave room for something after it.
 */
export function storedApplicationName(name: string, maxBytes = NAME_BYTES): string {
  let bytes = 0;
  let end = 0;
  for (const char of name) {
    const code = char.codePointAt(0)!;
    const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    if (bytes + size > Math.min(maxBytes, NAME_BYTES)) break;
    bytes += size;
    end += char.length;
  }
  return name.slice(0, end);
}

function poolConfig(
  target: PostgresTarget,
  ssl: ConnectionOptions | false,
  options: PoolOptions,
): pg.PoolConfig {
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    ssl,
    max: options.max ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: options.applicationName ?? "movie-tickets",
    keepAlive: true,
    // the timeouts are set in each transaction (transactionStart), not as startup parameters
  };
}

/**
 * A pool whose connections, killed by the server (restart, pg_terminate_backend), cannot crash
 * the process, whether idle in the pool or checked out between two queries: the loss is logged,
 * the next query on that connection fails and the caller's retry takes a fresh one.
 */
function newPool(config: pg.PoolConfig): pg.Pool {
  const pool = new pg.Pool(config);
  const lost = (error: Error) => log("warn", `PostgreSQL connection lost: ${messageOf(error)}`);
  pool.on("error", lost);
  pool.on("connect", (client) => client.on("error", lost));
  return pool;
}

/**
 * Creates a pool and proves it works with one query, so a bad URI, password or certificate fails
 * here with a clear message. `allow`/`prefer` fall back to plain text only when the server has no SSL.
 */
export async function createPool(options: PoolOptions): Promise<Database> {
  let target: PostgresTarget;
  try {
    target = parsePostgresUri(options.uri);
  } catch (error) {
    throw new AppError("BAD_INPUT", `PostgreSQL URI ${messageOf(error)}`);
  }
  try {
    registerSecret(Deno.env.get("PGPASSWORD")); // node-postgres sends it when the URI has none
  } catch { /* no env permission: node-postgres cannot read it either */ }
  let ssl = tlsOptions(target, options.certPath);
  let pool = newPool(poolConfig(target, ssl, options));
  try {
    await pool.query("select 1");
  } catch (error) {
    await pool.end().catch(() => {});
    const fallback = (target.sslmode === "prefer" || target.sslmode === "allow") &&
      /does not support SSL/i.test(messageOf(error));
    if (!fallback) throw describePgError(error, target);
    ssl = false;
    pool = newPool(poolConfig(target, ssl, options));
    try {
      await pool.query("select 1");
    } catch (error2) {
      await pool.end().catch(() => {});
      throw describePgError(error2, target);
    }
  }
  return {
    pool,
    target,
    label: describeTarget(target),
    begin: transactionStart(options),
    lockTimeoutMs: options.lockTimeoutMs,
  };
}

/**
 * What a PostgreSQL or driver error means for the consumer:
 * - `data`: the data itself (SQLSTATE class 22 data exception, 23 integrity constraint, 54
 *   program limit such as an index row too large): no retry heals it, splitting the batch finds
 *   the message;
 * - `schema`: class 42 (a missing table or column, no permission): no retry heals it either;
 * - `transient`: everything else: connections refused or reset, the server shutting down or
 *   restarting (57), deadlocks and serialization failures (40), lock timeouts (55), resources
 *   (53), and authentication (28, which a password rotation can heal): worth retrying.
 */
export type DbErrorKind = "data" | "schema" | "transient";

/** The SQLSTATE of an error from the server, if it is one. */
export function sqlStateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Sorts an error by what a retry can do about it (see {@linkcode DbErrorKind}). */
export function classifyDbError(error: unknown): DbErrorKind {
  const state = error instanceof AppError ? error.sqlState : sqlStateOf(error);
  if (error instanceof AppError && !state) return error.retriable ? "transient" : "schema";
  const cls = state?.slice(0, 2);
  if (cls === "22" || cls === "23" || cls === "54") return "data";
  if (cls === "42") return "schema";
  return "transient";
}
