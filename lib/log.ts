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

/**
 * Live progress of a long run: a redrawn bar with rate and ETA on a terminal, a plain line every
 * few seconds otherwise (so logs of unattended runs still show life).
 */
export class ProgressReporter {
  #lastDraw = 0;
  #lastPlain = performance.now();

  constructor(readonly label: string, readonly total?: number, readonly plainEveryMs = 5_000) {}

  /** Reports `done` items at `rate` per second, with optional extra text (e.g. lag). */
  update(done: number, rate: number, extra = ""): void {
    const now = performance.now();
    const finite = this.total !== undefined && Number.isFinite(this.total) && this.total > 0;
    const tail = `${Math.round(rate)}/s${extra ? `, ${extra}` : ""}`;
    if (isTerminal()) {
      if (now - this.#lastDraw < 100) return;
      this.#lastDraw = now;
      if (finite) {
        const total = this.total!;
        const share = Math.min(1, done / total);
        const width = 24;
        const filled = Math.round(share * width);
        const eta = rate > 0 ? Math.max(0, (total - done) / rate) : undefined;
        progress(
          `${this.label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${
            Math.floor(share * 100)
          }% ${done}/${total} ${tail}${eta !== undefined ? `, ETA ${formatSeconds(eta)}` : ""}`,
        );
      } else progress(`${this.label} ${done} ${tail}`);
    } else if (now - this.#lastPlain >= this.plainEveryMs) {
      this.#lastPlain = now;
      console.error(redact(`${this.label}: ${done}${finite ? `/${this.total}` : ""}, ${tail}`));
    }
  }

  /** Clears the bar. */
  done(): void {
    progressDone();
  }
}

/** `75 s` → `1m15s`. */
export function formatSeconds(seconds: number): string {
  const s = Math.round(seconds);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}
