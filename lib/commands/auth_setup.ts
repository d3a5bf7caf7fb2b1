/**
 * auth_setup: validates connection settings (all problems at once), writes the creds file, and
 * `--check`s the saved settings against the live services.
 * @module
 */
import { type CommandValues, defineCommand, parseCommandLine, type Problems } from "../cli/cli.ts";
import {
  absolutePath,
  checkHost,
  checkPort,
  checkPostgresUri,
  type Connection,
  CONNECTION_FLAGS,
  DEFAULT_SECURITY_PROTOCOL,
  resolveConnection,
} from "../config/config.ts";
import {
  type Creds,
  DEFAULT_CREDS_FILE,
  SECURITY_PROTOCOLS,
  type SecurityProtocol,
  writeCreds,
} from "../config/creds.ts";
import { messageOf } from "../errors.ts";
import { createKafka, describeKafkaError, withDeadline } from "../kafka/kafka.ts";
import { registerSecret } from "../log.ts";
import { createPool } from "../postgres/postgres.ts";
import { CERT_FILES, checkCertFolder, daysUntilExpiry } from "../config/tls.ts";
import { qualify } from "../postgres/schema.ts";
import { DEFAULT_SCHEMA, PIPELINE_FLAGS } from "./flags.ts";
import { join } from "node:path";

/** `auth_setup.ts`. */
export const AUTH_SETUP_SPEC = defineCommand({
  name: "auth_setup",
  summary:
    "check connection settings and save them to a creds file (mode 600); --check tests them live",
  flags: {
    ...CONNECTION_FLAGS,
    "sasl-username": {
      type: "string",
      description: "SCRAM user for SASL_SSL (password from env KAFKA_SASL_PASSWORD)",
    },
    "topic-name": {
      ...PIPELINE_FLAGS["topic-name"],
      required: false,
      description: "--check: also check that this topic exists",
    },
    "table-name": {
      ...PIPELINE_FLAGS["table-name"],
      required: false,
      description: "--check: also check that this table exists",
    },
    "schema": { ...PIPELINE_FLAGS["schema"], description: "--check: schema of --table-name" },
    "check": {
      type: "boolean",
      description: "connect to Kafka and PostgreSQL with the saved settings and report",
    },
  },
  examples: [
    "deno task auth_setup --kafka-hostname kafka-x.aivencloud.com --kafka-portnumber 11341 --cert-path ~/aiven-certs --postgres-uri 'postgres://avnadmin@pg-x.aivencloud.com:11339/defaultdb?sslmode=require'   (password from ~/.pgpass or PGPASSWORD)",
    "deno task auth_setup --check",
  ],
});

type AuthSetupValues = CommandValues<typeof AUTH_SETUP_SPEC.flags>;

/** Runs auth_setup; returns the exit code. */
export async function authSetup(args: string[]): Promise<number> {
  let creds: Creds | undefined;
  const values = parseCommandLine(AUTH_SETUP_SPEC, args, {
    check: (values, problems) => {
      if (!values.check) creds = credsOf(values, problems);
    },
  });
  if (!values) return 0;
  if (values.check) {
    const connection = resolveConnection(values, { kafka: true, postgres: true });
    const lines = await checkServices(connection, {
      topic: values["topic-name"],
      table: values["table-name"],
      schema: values.schema,
    });
    for (const line of lines) console.log(line.text);
    return lines.every((l) => l.ok) ? 0 : 1;
  }
  const path = values.creds ?? DEFAULT_CREDS_FILE;
  await writeCreds(path, creds!);
  console.log(
    `auth_setup: saved settings to ${path} (mode 600); test them with: deno task auth_setup --check`,
  );
  return 0;
}

/** The creds to save from the flags; records every problem (all settings are required here). */
function credsOf(values: AuthSetupValues, problems: Problems): Creds {
  const host = problems.required("kafka-hostname", values["kafka-hostname"]);
  checkHost(problems, "--kafka-hostname", host || undefined);
  const port = values["kafka-portnumber"] === undefined
    ? (problems.add("--kafka-portnumber is required"), undefined)
    : checkPort(problems, "--kafka-portnumber", values["kafka-portnumber"]);
  const uri = problems.required("postgres-uri", values["postgres-uri"]);
  checkPostgresUri(problems, "--postgres-uri", uri || undefined);
  const protocol = (values["security-protocol"] ?? DEFAULT_SECURITY_PROTOCOL)
    .toUpperCase() as SecurityProtocol;
  if (!SECURITY_PROTOCOLS.includes(protocol)) {
    problems.add(`--security-protocol must be one of ${SECURITY_PROTOCOLS.join(", ")}`);
  }
  const certFlag = values["cert-path"];
  if (protocol === "SSL" && certFlag === undefined) {
    problems.add(
      "--cert-path is required for SSL (a folder with ca.pem, service.cert, service.key)",
    );
  }
  if (certFlag !== undefined) {
    for (const p of checkCertFolder(certFlag, { clientCert: protocol === "SSL" })) problems.add(p);
  }
  const saslUsername = values["sasl-username"];
  const saslPassword = Deno.env.get("KAFKA_SASL_PASSWORD");
  registerSecret(saslPassword);
  if (protocol === "SASL_SSL" && (!saslUsername || !saslPassword)) {
    problems.add("SASL_SSL needs --sasl-username and the password in env KAFKA_SASL_PASSWORD");
  }
  return {
    kafka: {
      hostname: host,
      port: port!,
      securityProtocol: protocol,
      ...(certFlag !== undefined ? { certPath: absolutePath(certFlag) } : {}),
      ...(protocol === "SASL_SSL" ? { saslUsername, saslPassword } : {}),
    },
    postgres: { uri },
  };
}

/** One line of `--check`. */
export interface CheckLine {
  ok: boolean;
  text: string;
}

/** What the doctor looks at besides the connections. */
export interface CheckTargets {
  topic?: string;
  table?: string;
  schema?: string;
}

/** Findings about the cert folder: missing or broken files, a foreign CA, expiry, key permissions. */
export function certFindings(k: Connection["kafka"], now = new Date()): CheckLine[] {
  if (!k.certPath) return [];
  const lines: CheckLine[] = [];
  const clientCert = k.securityProtocol === "SSL";
  for (const problem of checkCertFolder(k.certPath, { clientCert, now })) {
    lines.push({ ok: false, text: `certificate: FAILED: ${problem}` });
  }
  const days = daysUntilExpiry(k.certPath, now);
  if (days !== undefined && days >= 0 && days < 30) {
    lines.push({
      ok: true,
      text: `certificate: warning: expires in ${Math.floor(days)} days; download a fresh one`,
    });
  }
  if (clientCert) {
    try {
      const mode = Deno.statSync(join(k.certPath, CERT_FILES.key)).mode;
      if (mode !== null && (mode & 0o077) !== 0) {
        lines.push({
          ok: false,
          text: `certificate: FAILED: ${
            join(k.certPath, CERT_FILES.key)
          } is readable by group or others; fix it with: chmod 600 ${
            join(k.certPath, CERT_FILES.key)
          }`,
        });
      }
    } catch { /* reported as missing above */ }
  }
  if (lines.length === 0) {
    lines.push({
      ok: true,
      text: `certificate: ok (${k.certPath}${
        days !== undefined ? `, valid for ${Math.floor(days)} more days` : ""
      })`,
    });
  }
  return lines;
}

/**
 * The doctor: checks the cert folder, connects to each service, and looks for the topic and the
 * table when named. One line per finding; `ok` false for each failure.
 */
export async function checkServices(
  connection: Connection,
  targets: CheckTargets = {},
): Promise<CheckLine[]> {
  const k = connection.kafka;
  const lines = certFindings(k);
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
      if (targets.topic) {
        const topics = await admin.listTopics();
        if (topics.includes(targets.topic)) {
          const offsets = await admin.fetchTopicOffsets(targets.topic);
          lines.push({
            ok: true,
            text: `topic ${targets.topic}: present (${offsets.length} partitions)`,
          });
        } else {
          lines.push({
            ok: false,
            text: `topic ${targets.topic}: FAILED: missing; producer.ts creates it`,
          });
        }
      }
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
    try {
      const res = await db.pool.query<{ v: string; ssl: boolean }>(
        "SELECT current_setting('server_version') AS v, coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS ssl",
      );
      const row = res.rows[0]!;
      lines.push({
        ok: true,
        text: `postgres: ok (${db.label}, PostgreSQL ${row.v}, ${
          row.ssl ? "TLS" : "NOT encrypted"
        })`,
      });
      if (targets.table) {
        const name =
          qualify({ schema: targets.schema ?? DEFAULT_SCHEMA, table: targets.table }).tickets;
        const found = await db.pool.query<{ t: string | null }>(
          "SELECT to_regclass($1)::text AS t",
          [name],
        );
        lines.push(
          found.rows[0]?.t ? { ok: true, text: `table ${name}: present` } : {
            ok: false,
            text: `table ${name}: FAILED: missing; run db_setup.ts --table-name ${targets.table}`,
          },
        );
      }
    } finally {
      await db.pool.end();
    }
  } catch (error) {
    lines.push({ ok: false, text: `postgres: FAILED: ${messageOf(error)}` });
  }
  return lines;
}
