/**
 * Command-line conventions shared by every script: typed flag specs (defaults and ranges as
 * values), one parser that turns a spec and the arguments into typed values and reports every
 * problem at once, and the `--help` text derived from the same spec.
 *
 * A command declares its flags once with {@linkcode defineCommand}; the type of the parsed values
 * follows from the spec:
 *
 * ```ts
 * const SPEC = defineCommand({
 *   name: "demo",
 *   summary: "...",
 *   flags: { "batch-size": { type: "integer", description: "rows", default: 500, min: 1, max: 1e5 } },
 * });
 * const values = parseCommandLine(SPEC, ["--batch-size", "10"]); // values["batch-size"]: number
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { AppError, messageOf } from "../errors.ts";
import { type LogLevel, setLogLevel } from "../log.ts";

interface FlagBase {
  /** One line for `--help`. */
  description: string;
  /**
   * What `--help` shows as the default when no `default` value is applied by the parser: a
   * default derived from other flags ("tickets-sink-<schema>-<table>"), one applied later (after
   * the environment and the creds file), or one that means the flag is absent ("run until
   * stopped").
   */
  defaultLabel?: string;
  /** Environment variable read when the flag is not given, before the default. */
  env?: string;
}

/** A flag without a value: true when given. */
export interface BooleanFlag extends FlagBase {
  type: "boolean";
}

/** A text flag. */
export interface StringFlag extends FlagBase {
  type: "string";
  default?: string;
  /** Refuse a missing or blank value ("--NAME is required"). */
  required?: boolean;
  /** Checks a given value: throws an error whose message names the problem. */
  check?: (value: string) => void;
}

/** A whole number within [min, max]. */
export interface IntegerFlag extends FlagBase {
  type: "integer";
  default?: number;
  min: number;
  max: number;
}

/** A decimal number within [min, max]. */
export interface NumberFlag extends FlagBase {
  type: "number";
  default?: number;
  min: number;
  max: number;
}

/** One of a fixed list of words. */
export interface ChoiceFlag extends FlagBase {
  type: "choice";
  choices: readonly string[];
  default?: string;
}

/** One flag of a command. */
export type FlagSpec = BooleanFlag | StringFlag | IntegerFlag | NumberFlag | ChoiceFlag;

/** Flags by name (without the leading `--`). */
export type FlagSpecs = Record<string, FlagSpec>;

type Defaulted<F, T> = F extends { default: unknown } | { required: true } ? T : T | undefined;

/** The parsed value of one flag: its type, `undefined` only where nothing supplies a value. */
export type FlagValue<F> = F extends { type: "boolean" } ? boolean
  : F extends { type: "integer" | "number" } ? Defaulted<F, number>
  : F extends { type: "choice"; choices: readonly (infer C)[] } ? Defaulted<F, C>
  : Defaulted<F, string>;

/** Parsed values by flag name, typed from the spec. */
export type FlagValues<F extends FlagSpecs> = { -readonly [K in keyof F]: FlagValue<F[K]> };

/** A command: its name, a summary and its flags (the common ones are added). */
export interface CommandSpec<F extends FlagSpecs = FlagSpecs> {
  name: string;
  summary: string;
  flags: F;
  /** Example invocations shown at the end of `--help`. */
  examples?: readonly string[];
}

/** Declares a command; the flags keep their literal types so the parsed values are typed. */
export function defineCommand<const F extends FlagSpecs>(spec: CommandSpec<F>): CommandSpec<F> {
  return spec;
}

/** Declares a group of flags shared by several commands, keeping their literal types. */
export function defineFlags<const F extends FlagSpecs>(flags: F): F {
  return flags;
}

const LOG_LEVELS = ["debug", "info", "warn", "error"] as const satisfies readonly LogLevel[];

/** Flags every script accepts. */
export const COMMON_FLAGS = defineFlags({
  "help": { type: "boolean", description: "show this help and exit" },
  "debug": { type: "boolean", description: "show stack traces of errors" },
  "log-level": { type: "choice", description: "log detail", choices: LOG_LEVELS, default: "info" },
});

/** Parsed values of a command's flags and the common ones. */
export type CommandValues<F extends FlagSpecs> = FlagValues<F & typeof COMMON_FLAGS>;

/** How a number flag's range reads in `--help`: `1-100000`, or `at least 1`. */
function rangeText(flag: IntegerFlag | NumberFlag): string {
  return flag.max >= Number.MAX_SAFE_INTEGER ? `at least ${flag.min}` : `${flag.min}-${flag.max}`;
}

/** The notes after a flag's description: env, choices, default, range, required. */
function flagNotes(flag: FlagSpec): string {
  const notes: string[] = [];
  if (flag.env) notes.push(`env ${flag.env}`);
  if (flag.type === "choice") notes.push(flag.choices.join(" | "));
  const shown = flag.defaultLabel ?? (flag.type === "boolean" ? undefined : flag.default);
  if (shown !== undefined) notes.push(`default: ${shown}`);
  if (flag.type === "integer" || flag.type === "number") notes.push(rangeText(flag));
  if (flag.type === "string" && flag.required) notes.push("required");
  return notes.length ? ` (${notes.join("; ")})` : "";
}

/** Renders the `--help` text of a command. */
export function helpText(spec: CommandSpec): string {
  const flags: FlagSpecs = { ...spec.flags, ...COMMON_FLAGS };
  const rows = Object.entries(flags).map(([name, flag]) => {
    const left = flag.type === "boolean" ? `--${name}` : `--${name} VALUE`;
    return `  ${left.padEnd(30)} ${flag.description}${flagNotes(flag)}`;
  });
  const examples = spec.examples?.length
    ? `\n\nExamples:\n${spec.examples.map((e) => `  ${e}`).join("\n")}`
    : "";
  return `${spec.name}: ${spec.summary}\n\nUsage: ${spec.name} [flags]\n\nFlags:\n${
    rows.join("\n")
  }${examples}`;
}

/**
 * Converts one flag's raw text (undefined when not given) to its typed value, applying the
 * default; records a problem and returns the default when the text is bad.
 */
export function flagValue(
  name: string,
  flag: FlagSpec,
  raw: string | boolean | undefined,
  problems: Problems,
): string | number | boolean | undefined {
  if (flag.type === "boolean") return raw === true;
  if (typeof raw !== "string") {
    if (flag.type === "string" && flag.required) problems.add(`--${name} is required`);
    return flag.default;
  }
  const text = raw.trim();
  switch (flag.type) {
    case "string":
      if (flag.required && text === "") {
        problems.add(`--${name} is required`);
        return raw;
      }
      problems.attempt(() => flag.check?.(raw));
      return raw;
    case "integer": {
      const value = Number(text);
      if (/^-?\d+$/.test(text) && Number.isSafeInteger(value) && inRange(flag, value)) return value;
      problems.add(
        `--${name} must be a whole number from ${flag.min} to ${flag.max}, not "${raw}"`,
      );
      return flag.default;
    }
    case "number": {
      const value = Number(text);
      if (text !== "" && Number.isFinite(value) && inRange(flag, value)) return value;
      problems.add(`--${name} must be a number from ${flag.min} to ${flag.max}, not "${raw}"`);
      return flag.default;
    }
    case "choice":
      if (flag.choices.includes(raw)) return raw;
      problems.add(`--${name} must be one of ${flag.choices.join(", ")}, not "${raw}"`);
      return flag.default;
  }
}

function inRange(flag: IntegerFlag | NumberFlag, value: number): boolean {
  return value >= flag.min && value <= flag.max;
}

/** Reads environment variables (`Deno.env`, or a stand-in in tests). */
export interface EnvReader {
  get(name: string): string | undefined;
}

/** Extra steps of {@linkcode parseCommandLine}. */
export interface ParseOptions<F extends FlagSpecs> {
  /**
   * Checks that involve several flags; problems it records are reported together with those of
   * the single flags. Runs on the values as parsed, a bad value replaced by its default.
   */
  check?: (values: CommandValues<F>, problems: Problems) => void;
  /** Where flags with an `env` read their fallback. @default {Deno.env} */
  env?: EnvReader;
}

/** The unknown-flag error: parseArgs' first line, a hint for `--flag -value`, the known flags. */
function usageError(error: unknown, flags: FlagSpecs): AppError {
  const known = Object.keys(flags).map((f) => `--${f}`).join(", ");
  let what = String((error as Error).message).split("\n")[0]?.replace(/\. To specify.*$/, "");
  const ambiguous = /Option '(--[\w-]+)' argument is ambiguous/.exec(what ?? "");
  if (ambiguous) {
    what = `${ambiguous[1]} got a value starting with "-": write it as ${ambiguous[1]}=VALUE`;
  }
  return new AppError("USAGE", `${what}; known flags: ${known}`);
}

/**
 * Parses `args` against `spec`: the typed values, defaults applied. Returns `undefined` after
 * printing help for `--help`; throws one USAGE error naming the known flags for an unknown flag
 * or a stray argument, and one USAGE error listing every bad value otherwise.
 */
export function parseCommandLine<F extends FlagSpecs>(
  spec: CommandSpec<F>,
  args: string[],
  options: ParseOptions<F> = {},
): CommandValues<F> | undefined {
  const flags: FlagSpecs = { ...spec.flags, ...COMMON_FLAGS };
  const argOptions = Object.fromEntries(
    Object.entries(flags).map(([name, flag]) => [
      name,
      { type: flag.type === "boolean" ? "boolean" as const : "string" as const },
    ]),
  );
  let raw: Record<string, string | boolean | undefined>;
  try {
    raw = parseArgs({ args, options: argOptions, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw usageError(error, flags);
  }
  if (raw.help) {
    console.log(helpText(spec));
    return undefined;
  }
  const problems = new Problems();
  const values: Record<string, unknown> = {};
  for (const [name, flag] of Object.entries(flags)) {
    const given = raw[name] ?? (flag.env ? (options.env ?? Deno.env).get(flag.env) : undefined);
    values[name] = flagValue(name, flag, given, problems);
  }
  const typed = values as CommandValues<F>;
  options.check?.(typed, problems);
  problems.throwIfAny();
  setLogLevel(typed["log-level"]);
  return typed;
}

/** Collects every problem with the inputs, then throws them together as one error. */
export class Problems {
  readonly list: string[] = [];

  /** Records a problem. */
  add(problem: string): void {
    this.list.push(problem);
  }

  /** Throws one error (USAGE unless told) listing all problems, if there are any. */
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

  /** Returns a value that must be given (not blank); records "--NAME is required" otherwise. */
  required(name: string, value: string | undefined): string {
    if (value === undefined || value.trim() === "") {
      this.add(`--${name} is required`);
      return "";
    }
    return value;
  }
}
