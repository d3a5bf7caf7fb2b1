/**
 * auth_setup: validates connection settings (all problems at once), writes the creds file, and
 * `--check`s the saved settings against the live services.
 * @module
 */
import { type CommandSpec, parseCommandLine, Problems, stringFlag } from "./cli.ts";
import {
  absolutePath,
  checkHost,
  checkPort,
  checkPostgresUri,
  type Connection,
  CONNECTION_FLAGS,
  resolveConnection,
} from "./config.ts";
import {
  type Creds,
  DEFAULT_CREDS_FILE,
  SECURITY_PROTOCOLS,
  type SecurityProtocol,
  writeCreds,
} from "./creds.ts";
import { AppError, messageOf } from "./errors.ts";
import { createKafka, describeKafkaError, withDeadline } from "./kafka.ts";
import { registerSecret } from "./log.ts";
import { createPool } from "./postgres.ts";
import { checkCertFolder, daysUntilExpiry } from "./tls.ts";

/** `auth_setup.ts`. */
export const AUTH_SETUP_SPEC: CommandSpec = {
  name: "auth_setup",
  summary:
    "check connection settings and save them to a creds file (mode 600); --check tests them live",
  flags: {
    ...CONNECTION_FLAGS,
    "sasl-username": {
      type: "string",
      description: "SCRAM user for SASL_SSL (password from env KAFKA_SASL_PASSWORD)",
    },
    "check": {
      type: "boolean",
      description: "connect to Kafka and PostgreSQL with the saved settings and report",
    },
  },
  examples: [
    "deno task auth_setup --kafka-hostname kafka-x.aivencloud.com --kafka-portnumber 11341 --cert-path ~/aiven-certs --postgres-uri 'postgres://avnadmin:PASSWORD@pg-x.aivencloud.com:11339/defaultdb?sslmode=require'",
    "deno task auth_setup --check",
  ],
};

/** Runs auth_setup; returns the exit code. */
export async function authSetup(args: string[]): Promise<number> {
  const values = parseCommandLine(AUTH_SETUP_SPEC, args);
  if (!values) return 0;
  if (values.check) {
    const connection = resolveConnection(values, { kafka: true, postgres: true });
    const lines = await checkServices(connection);
    for (const line of lines) console.log(line.text);
    return lines.every((l) => l.ok) ? 0 : 1;
  }
  const problems = new Problems();
  const host = problems.required(values, "kafka-hostname");
  checkHost(problems, "--kafka-hostname", host || undefined);
  const port = values["kafka-portnumber"] === undefined
    ? (problems.add("--kafka-portnumber is required"), undefined)
    : checkPort(problems, "--kafka-portnumber", String(values["kafka-portnumber"]));
  const uri = problems.required(values, "postgres-uri");
  checkPostgresUri(problems, "--postgres-uri", uri || undefined);
  const protocol = (stringFlag(values, "security-protocol") ?? "SSL")
    .toUpperCase() as SecurityProtocol;
  if (!SECURITY_PROTOCOLS.includes(protocol)) {
    problems.add(`--security-protocol must be one of ${SECURITY_PROTOCOLS.join(", ")}`);
  }
  const certFlag = stringFlag(values, "cert-path");
  if (protocol === "SSL" && certFlag === undefined) {
    problems.add(
      "--cert-path is required for SSL (a folder with ca.pem, service.cert, service.key)",
    );
  }
  if (certFlag !== undefined) {
    for (const p of checkCertFolder(certFlag, { clientCert: protocol === "SSL" })) problems.add(p);
  }
  const saslUsername = stringFlag(values, "sasl-username");
  const saslPassword = Deno.env.get("KAFKA_SASL_PASSWORD");
  registerSecret(saslPassword);
  if (protocol === "SASL_SSL" && (!saslUsername || !saslPassword)) {
    problems.add("SASL_SSL needs --sasl-username and the password in env KAFKA_SASL_PASSWORD");
  }
  problems.throwIfAny();
  const creds: Creds = {
    kafka: {
      hostname: host,
      port: port!,
      securityProtocol: protocol,
      ...(certFlag !== undefined ? { certPath: absolutePath(certFlag) } : {}),
      ...(protocol === "SASL_SSL" ? { saslUsername, saslPassword } : {}),
    },
    postgres: { uri },
  };
  const path = stringFlag(values, "creds") ?? DEFAULT_CREDS_FILE;
  await writeCreds(path, creds);
  console.log(
    `auth_setup: saved settings to ${path} (mode 600); test them with: deno task auth_setup --check`,
  );
  return 0;
}

/** One line of `--check`. */
export interface CheckLine {
  ok: boolean;
  text: string;
}

/** Connects to each service and returns one line per service. */
export async function checkServices(connection: Connection): Promise<CheckLine[]> {
  const lines: CheckLine[] = [];
  const k = connection.kafka;
  const days = k.certPath ? daysUntilExpiry(k.certPath) : undefined;
  if (days !== undefined && days < 30 && days >= 0) {
    lines.push({
      ok: true,
      text: `certificate: warning: expires in ${Math.floor(days)} days; download a fresh one`,
    });
  }
  try {
    const kafka = createKafka(k, { clientId: "tickets-auth-check", retries: 0 });
    const admin = kafka.admin();
    try {
      await withDeadline(admin.connect(), k.connectTimeoutMs + 1_000, "connecting to Kafka");
      const cluster = await withDeadline(
        admin.describeCluster(),
        k.connectTimeoutMs,
        "describing the Kafka cluster",
      );
      lines.push({
        ok: true,
        text: `kafka: ok (${k.securityProtocol} ${
          k.brokers.join(",")
        }, ${cluster.brokers.length} broker(s))`,
      });
    } finally {
      await admin.disconnect().catch(() => {});
    }
  } catch (error) {
    lines.push({ ok: false, text: `kafka: FAILED: ${messageOf(describeKafkaError(error, k))}` });
  }
  try {
    const db = await createPool({
      uri: connection.postgresUri,
      certPath: k.certPath,
      connectTimeoutMs: connection.connectTimeoutMs,
      max: 1,
    });
    const res = await db.pool.query<{ v: string; ssl: boolean }>(
      "SELECT current_setting('server_version') AS v, coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS ssl",
    );
    await db.pool.end();
    const row = res.rows[0]!;
    lines.push({
      ok: true,
      text: `postgres: ok (${db.label}, PostgreSQL ${row.v}, ${row.ssl ? "TLS" : "NOT encrypted"})`,
    });
  } catch (error) {
    lines.push({
      ok: false,
      text: `postgres: FAILED: ${messageOf(error instanceof AppError ? error : error)}`,
    });
  }
  return lines;
}
