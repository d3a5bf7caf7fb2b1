/**
 * Output helpers: secret redaction, stderr logging, terminal progress.
 * @module
 */

const secrets = new Set<string>();

/** Registers a value (a password, a key) that must never appear in any output. */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 4) secrets.add(value);
}

const URI_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@\s]*)@/gi;
const PRIVATE_KEY =
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;
const PASSWORD_PARAM = /\b(password|sslpassword)=([^&\s]+)/gi;

/** Removes passwords, private keys and registered secrets from a text. */
export function redact(text: string): string {
  let out = text.replace(URI_PASSWORD, "$1***@")
    .replace(PRIVATE_KEY, "[private key redacted]")
    .replace(PASSWORD_PARAM, "$1=***");
  for (const secret of secrets) out = out.split(secret).join("***");
  return out;
}

/** Severity of a log line; `--log-level` picks the lowest shown. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold = LEVELS.info;

/** Sets the lowest level written to stderr. */
export function setLogLevel(level: LogLevel): void {
  threshold = LEVELS[level];
}

/** Writes one redacted line to stderr when `level` is at or above the threshold. */
export function log(level: LogLevel, message: string): void {
  if (LEVELS[level] < threshold) return;
  const prefix = level === "info" ? "" : `${level}: `;
  console.error(redact(prefix + message));
}

/** True when stderr is a terminal, so progress lines may redraw in place. */
export function isTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

const encoder = new TextEncoder();

/** Redraws a one-line progress message on a terminal; does nothing otherwise. */
export function progress(message: string): void {
  if (!isTerminal()) return;
  Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${message}`));
}

/** Ends a progress line so the next output starts on a fresh line. */
export function progressDone(): void {
  if (isTerminal()) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
}
