/**
 * The project's one error type and the process-exit convention shared by every entrypoint.
 * @module
 */
import { redact } from "./log.ts";

/** What went wrong, in a word a script or a test can branch on. */
export type ErrorCode =
  | "USAGE"
  | "BAD_INPUT"
  | "CREDS"
  | "MISSING_CERT"
  | "BAD_CERT"
  | "KAFKA_UNREACHABLE"
  | "KAFKA_TLS"
  | "KAFKA_AUTH"
  | "KAFKA"
  | "DB_UNREACHABLE"
  | "DB_TLS"
  | "DB_AUTH"
  | "DB"
  | "NOT_FOUND"
  | "UNSENT"
  | "TIMEOUT";

/** Codes caused by a bad command line or bad settings: the process exits with 2. */
const USAGE_CODES: ReadonlySet<ErrorCode> = new Set(["USAGE", "BAD_INPUT"]);

/** Options of an {@linkcode AppError}: its cause, and what a retry can do about it. */
export interface AppErrorOptions extends ErrorOptions {
  /** Waiting and trying again may succeed (an outage), as opposed to a wrong setting. @default {false} */
  retriable?: boolean;
  /** PostgreSQL's SQLSTATE, when the database said so. */
  sqlState?: string;
}

/** An error meant for the user: one line naming the problem and the fix, plus a code and a cause. */
export class AppError extends Error {
  /** Waiting and trying again may succeed. */
  readonly retriable: boolean;
  /** PostgreSQL's SQLSTATE, when the database said so. */
  readonly sqlState?: string;

  constructor(readonly code: ErrorCode, message: string, options?: AppErrorOptions) {
    super(message, options);
    this.name = "AppError";
    this.retriable = options?.retriable ?? false;
    if (options?.sqlState) this.sqlState = options.sqlState;
  }

  /** Exit status for this error: 2 for usage problems, 1 for runtime failures. */
  get exitCode(): number {
    return USAGE_CODES.has(this.code) ? 2 : 1;
  }
}

/** The message of any thrown value, as one line. */
export function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? "";
}

/**
 * Runs an entrypoint's `main` and turns a thrown error into `error: <message>` on stderr and an
 * exit status; the stack trace is shown only when `--debug` is among the arguments.
 */
export async function exitWith(
  main: (args: string[]) => Promise<number>,
  args: string[],
): Promise<number> {
  try {
    return await main(args);
  } catch (error) {
    const debug = args.includes("--debug");
    console.error(`error: ${redact(messageOf(error))}`);
    if (debug && error instanceof Error) {
      console.error(redact(error.stack ?? ""));
      if (error.cause) {
        console.error(redact(`cause: ${String((error.cause as Error).stack ?? error.cause)}`));
      }
    }
    return error instanceof AppError ? error.exitCode : 1;
  }
}
