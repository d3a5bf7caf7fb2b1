/**
 * The creds file written by `auth_setup.ts`: its shape, a safe atomic write with mode 0600, and a
 * read that refuses a file other users could read. The read also takes the original Python
 * `auth_setup.py`'s form (a list with one `KAFKA_HOST`/`KAFKA_PORT`/`POSTGRES_URI` object).
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { AppError } from "../errors.ts";
import { log, registerSecret } from "../log.ts";

/** How clients authenticate to Kafka. */
export type SecurityProtocol = "SSL" | "PLAINTEXT" | "SASL_SSL";
/** The protocols in the order `--help` lists them. */
export const SECURITY_PROTOCOLS: readonly SecurityProtocol[] = ["SSL", "PLAINTEXT", "SASL_SSL"];

/** Saved connection settings. */
export interface Creds {
  kafka: {
    hostname: string;
    port: number;
    securityProtocol: SecurityProtocol;
    /** Absolute path of the cert folder (ca.pem, service.cert, service.key). */
    certPath?: string;
    saslUsername?: string;
    saslPassword?: string;
  };
  postgres: { uri: string };
}

/** Default location of the creds file. */
export const DEFAULT_CREDS_FILE = "./creds.json";

/** Writes `creds` to `path` atomically (temp file + rename) with mode 0600. */
export async function writeCreds(path: string, creds: Creds): Promise<void> {
  const temp = join(dirname(path), `.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.writeTextFile(temp, JSON.stringify(creds, null, 2) + "\n", { mode: 0o600 });
    await Deno.chmod(temp, 0o600);
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw new AppError("CREDS", `cannot write creds file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Reads the creds file, or returns undefined when it does not exist. Refuses a file readable by
 * group or others, and a file that is not valid creds JSON. Takes the original auth_setup.py's
 * list form too (see {@linkcode credsFromOriginal}), with a one-line notice; never rewrites it.
 */
export function readCreds(path: string): Creds | undefined {
  let info;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new AppError("CREDS", `cannot read creds file ${path}: ${(error as Error).message}`);
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new AppError(
      "CREDS",
      `creds file ${path} is readable by group or others (mode ${
        (info.mode & 0o777).toString(8)
      }); fix it with: chmod 600 ${path}`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(Deno.readTextFileSync(path));
  } catch {
    throw new AppError("CREDS", `creds file ${path} is not valid JSON; run auth_setup.ts again`);
  }
  if (Array.isArray(data)) {
    const creds = credsFromOriginal(data, path);
    noticeOriginalForm(path);
    return creds;
  }
  const creds = data as Partial<Creds>;
  if (
    typeof creds?.kafka?.hostname !== "string" || typeof creds.kafka.port !== "number" ||
    typeof creds.postgres?.uri !== "string"
  ) {
    throw new AppError(
      "CREDS",
      `creds file ${path} lacks kafka or postgres settings; run auth_setup.ts again`,
    );
  }
  registerSecret(creds.kafka.saslPassword);
  return creds as Creds;
}

/**
 * Maps the original Python `auth_setup.py`'s creds (`[{"KAFKA_HOST", "KAFKA_PORT",
 * "POSTGRES_URI"}]`) onto {@linkcode Creds}. That project always used SSL with the cert folder
 * passed to each run, so the protocol is SSL and the cert folder comes from `--cert-path` (or env
 * KAFKA_CERT_PATH). Messages never quote the URI (it may hold the password).
 */
export function credsFromOriginal(list: unknown[], path: string): Creds {
  const fix = `; run auth_setup.ts to write a new one`;
  if (list.length !== 1 || typeof list[0] !== "object" || list[0] === null) {
    throw new AppError(
      "CREDS",
      `creds file ${path} is a list of ${list.length} entries; the original auth_setup.py form is a list with one object${fix}`,
    );
  }
  const entry = list[0] as Record<string, unknown>;
  const host = entry.KAFKA_HOST;
  const port = entry.KAFKA_PORT;
  const uri = entry.POSTGRES_URI;
  const portNumber = typeof port === "number"
    ? port
    : typeof port === "string" && /^\s*\d+\s*$/.test(port)
    ? Number(port)
    : NaN;
  const missing = [
    typeof host === "string" && host.trim() ? undefined : "KAFKA_HOST",
    Number.isInteger(portNumber) ? undefined : "KAFKA_PORT",
    typeof uri === "string" && uri.trim() ? undefined : "POSTGRES_URI",
  ].filter((name) => name !== undefined);
  if (missing.length > 0) {
    throw new AppError(
      "CREDS",
      `creds file ${path} (original auth_setup.py form) lacks a usable ${missing.join(", ")}${fix}`,
    );
  }
  return {
    kafka: { hostname: (host as string).trim(), port: portNumber, securityProtocol: "SSL" },
    postgres: { uri: (uri as string).trim() },
  };
}

const noticed = new Set<string>();

/** Says once per file and process that the file is in the original form, and how to update it. */
function noticeOriginalForm(path: string): void {
  const key = resolve(path);
  if (noticed.has(key)) return;
  noticed.add(key);
  log(
    "warn",
    `creds file ${path} is in the original auth_setup.py form: using its KAFKA_HOST, KAFKA_PORT and POSTGRES_URI (Kafka over SSL, cert folder from --cert-path); run auth_setup to save the newer fields (--security-protocol, --cert-path, SASL) there; the file is left as it is`,
  );
}
