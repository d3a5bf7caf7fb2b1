/**
 * The creds file written by `auth_setup.ts`: its shape, a safe atomic write with mode 0600, and a
 * read that refuses a file other users could read.
 * @module
 */
import { dirname, join } from "node:path";
import { AppError } from "../errors.ts";
import { registerSecret } from "../observe/log.ts";

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
 * group or others, and a file that is not valid creds JSON.
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
