/**
 * Command-line conventions shared by every script: flag specs, `--help` text, strict parsing with
 * the list of known flags on a typo, and value checks that report every problem at once.
 * @module
 */
import { parseArgs } from "node:util";
import { AppError, messageOf } from "../errors.ts";
import { type LogLevel, setLogLevel } from "../observe/log.ts";

/** One flag of a command. */
export interface FlagSpec {
  /** `string` flags take a value; `boolean` flags do not. */
  type: "string" | "boolean";
  /** One line for `--help`. */
  description: string;
  /** Shown in `--help`; applied by the caller, not here, so "not given" stays detectable. */
  default?: string;
}

/** A command: its name, a summary and its flags (the common ones are added). */
export interface CommandSpec {
  name: string;
  summary: string;
  flags: Record<string, FlagSpec>;
  /** Example invocations shown at the end of `--help`. */
  examples?: string[];
}

/** Flags every script accepts. */
export const COMMON_FLAGS: Record<string, FlagSpec> = {
  "help": { type: "boolean", description: "show this help and exit" },
  "debug": { type: "boolean", description: "show stack traces of errors" },
  "log-level": { type: "string", description: "debug | info | warn | error", default: "info" },
};

/** Parsed flag values by flag name. */
export type FlagValues = Record<string, string | boolean | undefined>;

/** Renders the `--help` text of a command. */
export function helpText(spec: CommandSpec): string {
  const flags = { ...spec.flags, ...COMMON_FLAGS };
  const rows = Object.entries(flags).map(([name, flag]) => {
    const left = flag.type === "string" ? `--${name} VALUE` : `--${name}`;
    const def = flag.default !== undefined ? ` (default: ${flag.default})` : "";
    return `  ${left.padEnd(30)} ${flag.description}${def}`;
  });
  const examples = spec.examples?.length
    ? `\n\nExamples:\n${spec.examples.map((e) => `  ${e}`).join("\n")}`
    : "";
  return `${spec.name}: ${spec.summary}\n\nUsage: ${spec.name} [flags]\n\nFlags:\n${
    rows.join("\n")
  }${examples}`;
}

/**
 * Parses `args` against `spec`. Returns `undefined` after printing help for `--help`; throws a
 * USAGE error naming the known flags for an unknown flag or a stray argument.
 */
export function parseCommandLine(spec: CommandSpec, args: string[]): FlagValues | undefined {
  const flags = { ...spec.flags, ...COMMON_FLAGS };
  const options = Object.fromEntries(
    Object.entries(flags).map(([name, flag]) => [name, { type: flag.type }]),
  ) as Record<string, { type: "string" | "boolean" }>;
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (error) {
    const known = Object.keys(flags).map((f) => `--${f}`).join(", ");
    let what = String((error as Error).message).split("\n")[0]?.replace(/\. To specify.*$/, "");
    const ambiguous = /Option '(--[\w-]+)' argument is ambiguous/.exec(what ?? "");
    if (ambiguous) {
      what = `${ambiguous[1]} got a value starting with "-": write it as ${ambiguous[1]}=VALUE`;
    }
    throw new AppError("USAGE", `${what}; known flags: ${known}`);
  }
  const values = parsed.values as FlagValues;
  if (values.help) {
    console.log(helpText(spec));
    return undefined;
  }
  const level = values["log-level"];
  if (level !== undefined) {
    if (!["debug", "info", "warn", "error"].includes(String(level))) {
      throw new AppError("USAGE", `--log-level must be debug, info, warn or error, not ${level}`);
    }
    setLogLevel(level as LogLevel);
  }
  return values;
}

/** Collects every problem with the inputs, then throws them together as one error. */
export class Problems {
  readonly list: string[] = [];

  /** Records a problem. */
  add(problem: string): void {
    this.list.push(problem);
  }

  /** Throws one BAD_INPUT error listing all problems, if there are any. */
  throwIfAny(code: "BAD_INPUT" | "USAGE" = "USAGE"): void {
    if (this.list.length === 0) return;
    throw new AppError(code, this.list.join("; "));
  }

  /** Runs a check that throws on bad input, recording its message instead. */
  attempt(check: () => unknown): void {
    try {
      check();
    } catch (error) {
      this.add(messageOf(error));
    }
  }

  /** Reads an integer flag within [min, max]; records a problem and returns undefined if bad. */
  integer(
    values: FlagValues,
    name: string,
    fallback: number | undefined,
    min: number,
    max: number,
  ): number | undefined {
    const raw = values[name];
    if (raw === undefined) return fallback;
    const text = String(raw).trim();
    const value = Number(text);
    if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.add(`--${name} must be a whole number from ${min} to ${max}, not "${raw}"`);
      return undefined;
    }
    return value;
  }

  /** Reads a decimal flag within [min, max]. */
  number(
    values: FlagValues,
    name: string,
    fallback: number | undefined,
    min: number,
    max: number,
  ): number | undefined {
    const raw = values[name];
    if (raw === undefined) return fallback;
    const value = Number(String(raw).trim());
    if (String(raw).trim() === "" || !Number.isFinite(value) || value < min || value > max) {
      this.add(`--${name} must be a number from ${min} to ${max}, not "${raw}"`);
      return undefined;
    }
    return value;
  }

  /** Reads a flag whose value must be one of `choices`. */
  choice<T extends string>(
    values: FlagValues,
    name: string,
    fallback: T,
    choices: readonly T[],
  ): T {
    const raw = values[name];
    if (raw === undefined) return fallback;
    const value = String(raw);
    if (!(choices as readonly string[]).includes(value)) {
      this.add(`--${name} must be one of ${choices.join(", ")}, not "${value}"`);
      return fallback;
    }
    return value as T;
  }

  /** Reads a required string flag. */
  required(values: FlagValues, name: string): string {
    const raw = values[name];
    if (raw === undefined || String(raw).trim() === "") {
      this.add(`--${name} is required`);
      return "";
    }
    return String(raw);
  }
}

/** Text flag value, or undefined when not given. */
export function stringFlag(values: FlagValues, name: string): string | undefined {
  const raw = values[name];
  return raw === undefined ? undefined : String(raw);
}
