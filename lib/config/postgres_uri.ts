/**
 * PostgreSQL URIs: parsing, libpq's `sslmode` semantics, and a printable form without the password.
 * @module
 */
import { registerSecret } from "../log.ts";

/** libpq's SSL modes. */
export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
const SSL_MODES: readonly SslMode[] = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];

/** The parts of a PostgreSQL URI. */
export interface PostgresTarget {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  sslmode: SslMode;
  /** Was `sslmode` given in the URI (rather than defaulted)? */
  sslmodeGiven: boolean;
  /**
   * The URI's `sslrootcert`: a CA file, or `system` for the system's trusted CAs (which, as in
   * libpq, implies `verify-full`).
   */
  sslrootcert?: string;
}

/**
 * Parses `postgres://user:password@host:port/db?sslmode=...`. Without `sslmode`, loopback hosts
 * default to libpq's `prefer` and every other host to `require`, so remote traffic is encrypted.
 * As in libpq, `sslrootcert=system` makes `verify-full` the default and refuses any other mode.
 */
export function parsePostgresUri(uri: string): PostgresTarget {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new Error(
      "not a URI; expected postgres://user:password@host:port/database?sslmode=require",
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new Error(`scheme must be postgres:// or postgresql://, not ${url.protocol}//`);
  }
  const host = decodeURIComponent(url.hostname).replace(/^\[|\]$/g, "");
  if (!host) throw new Error("has no host; expected postgres://user:password@host:port/database");
  const port = url.port ? Number(url.port) : 5432;
  const user = decodeURIComponent(url.username);
  if (!user) {
    throw new Error("has no user name; expected postgres://user:password@host:port/database");
  }
  const password = url.password ? decodeURIComponent(url.password) : undefined;
  registerSecret(password);
  const database = decodeURIComponent(url.pathname.replace(/^\//, "")) || user;
  const given = url.searchParams.get("sslmode");
  if (given !== null && !SSL_MODES.includes(given as SslMode)) {
    throw new Error(`sslmode must be one of ${SSL_MODES.join(", ")}, not "${given}"`);
  }
  const sslrootcert = url.searchParams.get("sslrootcert") ?? undefined;
  const sslmode = (given ??
    (sslrootcert === "system"
      ? "verify-full"
      : isLoopback(host)
      ? "prefer"
      : "require")) as SslMode;
  if (sslrootcert === "system" && sslmode !== "verify-full") {
    throw new Error(
      `sets sslmode=${sslmode}, which may not be used with sslrootcert=system (as in libpq); use sslmode=verify-full or leave sslmode out`,
    );
  }
  return {
    host,
    port,
    user,
    password,
    database,
    sslmode,
    sslmodeGiven: given !== null,
    sslrootcert,
  };
}

/** The URI without its password, for messages. */
export function describeTarget(target: PostgresTarget): string {
  return `postgres://${target.user}@${target.host}:${target.port}/${target.database}`;
}

/** True for hosts that never leave the machine. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host.startsWith("127.") || host === "::1" || host === "[::1]";
}
