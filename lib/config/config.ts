/**
 * The one config resolver: every setting comes from a flag, else the environment, else the creds
 * file, else a default. Also the validators of hosts, ports and URIs that auth_setup shares.
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { defineFlags, type FlagValues, Problems } from "../cli/cli.ts";
import {
  type Creds,
  DEFAULT_CREDS_FILE,
  readCreds,
  SECURITY_PROTOCOLS,
  type SecurityProtocol,
} from "./creds.ts";
import { registerSecret } from "../log.ts";
import { parsePostgresUri } from "./postgres_uri.ts";

/** Security protocol when no flag, environment variable or creds file names one. */
export const DEFAULT_SECURITY_PROTOCOL: SecurityProtocol = "SSL";

/**
 * Flags that pick the services; shared by every script that connects. Their defaults are applied
 * by {@linkcode resolveConnection}, after the environment and the creds file.
 */
export const CONNECTION_FLAGS = defineFlags({
  "creds": {
    type: "string",
    description: "creds file written by auth_setup (env CREDS_FILE)",
    defaultLabel: DEFAULT_CREDS_FILE,
  },
  "kafka-hostname": { type: "string", description: "Kafka host (env KAFKA_HOSTNAME)" },
  "kafka-portnumber": { type: "string", description: "Kafka port (env KAFKA_PORTNUMBER)" },
  "security-protocol": {
    type: "string",
    description: "SSL | PLAINTEXT | SASL_SSL (env KAFKA_SECURITY_PROTOCOL)",
    defaultLabel: DEFAULT_SECURITY_PROTOCOL,
  },
  "cert-path": {
    type: "string",
    description: "folder with ca.pem, service.cert, service.key (env KAFKA_CERT_PATH)",
  },
  "postgres-uri": {
    type: "string",
    description:
      "postgres://user@host:port/db?sslmode=require, password from PGPASSWORD or ~/.pgpass (env POSTGRES_URI)",
  },
  "database": {
    type: "string",
    description: "database to use instead of the one in the PostgreSQL URI (env POSTGRES_DATABASE)",
  },
  "connect-timeout": {
    type: "number",
    description: "seconds to wait for a connection before giving up",
    default: 10,
    min: 0.1,
    max: 3600,
  },
});

/** Values of {@linkcode CONNECTION_FLAGS} as parsed; any may be left out. */
export type ConnectionValues = Partial<FlagValues<typeof CONNECTION_FLAGS>>;

/** Where and how to reach Kafka. */
export interface KafkaSettings {
  brokers: string[];
  securityProtocol: SecurityProtocol;
  /** Cert folder; required for SSL, gives the CA for SASL_SSL. */
  certPath?: string;
  sasl?: { username: string; password: string };
  connectTimeoutMs: number;
}

/** Everything a script needs to connect. */
export interface Connection {
  kafka: KafkaSettings;
  postgresUri: string;
  connectTimeoutMs: number;
}

/** Which services a script needs; only those are required to be configured. */
export interface Needs {
  kafka?: boolean;
  postgres?: boolean;
}

const HOST_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** True for a DNS name, an IPv4 address, or a bracketed or bare IPv6 address. */
export function isValidHost(host: string): boolean {
  if (host.length === 0 || host.length > 253) return false;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) return host.split(".").every((p) => Number(p) <= 255);
  if (/^\[?[0-9a-fA-F:]+\]?$/.test(host) && host.includes(":")) return true;
  return host.split(".").every((label) => HOST_LABEL.test(label));
}

/** Checks a host; records a problem when bad. */
export function checkHost(problems: Problems, name: string, host: string | undefined): void {
  if (host !== undefined && !isValidHost(host)) {
    problems.add(`${name} "${host}" is not a valid host name or IP address`);
  }
}

/** Parses a port; records a problem when out of range. */
export function checkPort(
  problems: Problems,
  name: string,
  raw: string | number | undefined,
): number | undefined {
  if (raw === undefined) return undefined;
  const text = String(raw).trim();
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    problems.add(`${name} must be a port number from 1 to 65535, not "${raw}"`);
    return undefined;
  }
  return port;
}

/** Checks a PostgreSQL URI; records a problem when bad. */
export function checkPostgresUri(problems: Problems, name: string, uri: string | undefined): void {
  if (uri === undefined) return;
  try {
    parsePostgresUri(uri);
  } catch (error) {
    problems.add(`${name}: ${(error as Error).message}`);
  }
}

/** Absolute form of a path, relative to the working directory. */
export function absolutePath(path: string): string {
  return isAbsolute(path) ? path : resolve(path);
}

/**
 * Resolves connection settings: flag > environment > creds file > default. Reports every missing
 * or invalid setting at once.
 */
export function resolveConnection(
  values: ConnectionValues,
  needs: Needs = { kafka: true, postgres: true },
  env: { get(name: string): string | undefined } = Deno.env,
): Connection {
  const problems = new Problems();
  const credsPath = values.creds ?? env.get("CREDS_FILE") ?? DEFAULT_CREDS_FILE;
  const creds: Creds | undefined = readCreds(credsPath);
  const pick = (
    flag: Exclude<keyof ConnectionValues, "connect-timeout">,
    envName: string,
    saved: string | number | undefined,
  ) =>
    values[flag] ?? env.get(envName) ??
      (saved === undefined ? undefined : String(saved));

  const hostname = pick("kafka-hostname", "KAFKA_HOSTNAME", creds?.kafka.hostname);
  const portRaw = pick("kafka-portnumber", "KAFKA_PORTNUMBER", creds?.kafka.port);
  const protocolRaw =
    pick("security-protocol", "KAFKA_SECURITY_PROTOCOL", creds?.kafka.securityProtocol) ??
      DEFAULT_SECURITY_PROTOCOL;
  const certPath = pick("cert-path", "KAFKA_CERT_PATH", creds?.kafka.certPath);
  let postgresUri = pick("postgres-uri", "POSTGRES_URI", creds?.postgres.uri);
  const database = pick("database", "POSTGRES_DATABASE", undefined);
  if (database !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/.test(database)) {
      problems.add(
        `database "${database.slice(0, 80)}" is not allowed: use 1-63 letters, digits, _, $ or -`,
      );
    } else if (postgresUri !== undefined) {
      try {
        const url = new URL(postgresUri);
        url.pathname = `/${database}`;
        postgresUri = url.toString();
      } catch { /* reported by the URI check below */ }
    }
  }
  const saslUsername = env.get("KAFKA_SASL_USERNAME") ?? creds?.kafka.saslUsername;
  const saslPassword = env.get("KAFKA_SASL_PASSWORD") ?? creds?.kafka.saslPassword;
  registerSecret(saslPassword);
  const timeoutSeconds = values["connect-timeout"] ?? CONNECTION_FLAGS["connect-timeout"].default;
  const hint = `run auth_setup.ts first (no creds file at ${credsPath})`;

  const protocol = protocolRaw.toUpperCase() as SecurityProtocol;
  if (!SECURITY_PROTOCOLS.includes(protocol)) {
    problems.add(
      `security protocol must be one of ${SECURITY_PROTOCOLS.join(", ")}, not "${protocolRaw}"`,
    );
  }
  let port: number | undefined;
  if (needs.kafka) {
    if (hostname === undefined) problems.add(`no Kafka host: pass --kafka-hostname or ${hint}`);
    checkHost(problems, "Kafka host", hostname);
    if (portRaw === undefined) problems.add(`no Kafka port: pass --kafka-portnumber or ${hint}`);
    port = checkPort(problems, "Kafka port", portRaw);
    if (protocol === "SSL" && certPath === undefined) {
      problems.add(
        "SSL needs a cert folder: pass --cert-path DIR (with ca.pem, service.cert, service.key)",
      );
    }
    if (protocol === "SASL_SSL" && (!saslUsername || !saslPassword)) {
      problems.add(
        "SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or a creds file that has them)",
      );
    }
  }
  if (needs.postgres) {
    if (postgresUri === undefined) {
      problems.add(`no PostgreSQL URI: pass --postgres-uri or ${hint}`);
    }
    checkPostgresUri(problems, "PostgreSQL URI", postgresUri);
  }
  problems.throwIfAny();
  const connectTimeoutMs = Math.round(timeoutSeconds * 1000);
  return {
    kafka: {
      brokers: hostname && port
        ? [
          `${
            hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname
          }:${port}`,
        ]
        : [],
      securityProtocol: protocol,
      certPath: certPath === undefined ? undefined : absolutePath(certPath),
      sasl: protocol === "SASL_SSL" && saslUsername && saslPassword
        ? { username: saslUsername, password: saslPassword }
        : undefined,
      connectTimeoutMs,
    },
    postgresUri: postgresUri ?? "",
    connectTimeoutMs,
  };
}
