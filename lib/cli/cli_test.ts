import assert from "node:assert/strict";
import { AppError } from "../errors.ts";
import {
  type CommandValues,
  defineCommand,
  type EnvReader,
  helpText,
  parseCommandLine,
} from "./cli.ts";

const SPEC = defineCommand({
  name: "sample",
  summary: "a command to test the parser",
  flags: {
    "name": {
      type: "string",
      description: "a required name",
      required: true,
      check: (name) => {
        if (name.includes(" ")) throw new AppError("USAGE", `--name "${name}" has a space`);
      },
    },
    "label": { type: "string", description: "optional text" },
    "mode": { type: "string", description: "text with a default", default: "plain" },
    "batch-size": {
      type: "integer",
      description: "rows per batch",
      default: 5000,
      min: 1,
      max: 100_000,
    },
    "limit": { type: "integer", description: "no default", min: 1, max: Number.MAX_SAFE_INTEGER },
    "rate": {
      type: "number",
      description: "per second",
      defaultLabel: "as fast as possible",
      min: 0.01,
      max: 1000,
    },
    "share": { type: "number", description: "a share", default: 0, min: 0, max: 1 },
    "codec": { type: "choice", description: "codec", choices: ["none", "gzip"], default: "none" },
    "reset": { type: "choice", description: "where to", choices: ["earliest", "latest"] },
    "port": {
      type: "integer",
      description: "a port",
      env: "SAMPLE_PORT",
      default: 55433,
      min: 0,
      max: 65535,
    },
    "keep": { type: "boolean", description: "a switch" },
  },
  examples: ["sample --name x"],
});

const noEnv: EnvReader = { get: () => undefined };

function parse(args: string[], env = noEnv): CommandValues<typeof SPEC.flags> {
  const values = parseCommandLine(SPEC, args, { env });
  assert.ok(values, "parse printed help");
  return values;
}

function usage(args: string[], options: Parameters<typeof parseCommandLine>[2] = {}): string {
  try {
    parseCommandLine(SPEC, args, { env: noEnv, ...options });
  } catch (error) {
    assert.ok(error instanceof AppError);
    assert.equal(error.code, "USAGE");
    return error.message;
  }
  assert.fail(`no error for ${args.join(" ")}`);
}

// Compile-time checks: the parsed values are typed from the spec (a wrong type fails `deno check`).
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
type Values = CommandValues<typeof SPEC.flags>;
const typeChecks: [
  Equal<Values["name"], string>,
  Equal<Values["label"], string | undefined>,
  Equal<Values["mode"], string>,
  Equal<Values["batch-size"], number>,
  Equal<Values["limit"], number | undefined>,
  Equal<Values["rate"], number | undefined>,
  Equal<Values["codec"], "none" | "gzip">,
  Equal<Values["reset"], "earliest" | "latest" | undefined>,
  Equal<Values["keep"], boolean>,
  Equal<Values["log-level"], "debug" | "info" | "warn" | "error">,
] = [true, true, true, true, true, true, true, true, true, true];

Deno.test("parseCommandLine() applies the spec's defaults and leaves the rest undefined", () => {
  assert.equal(typeChecks.length, 10);
  const values = parse(["--name", "x"]);
  assert.equal(values.name, "x");
  assert.equal(values.label, undefined);
  assert.equal(values.mode, "plain");
  assert.equal(values["batch-size"], 5000);
  assert.equal(values.limit, undefined);
  assert.equal(values.rate, undefined, "a defaultLabel is shown, not applied");
  assert.equal(values.share, 0);
  assert.equal(values.codec, "none");
  assert.equal(values.reset, undefined);
  assert.equal(values.port, 55433);
  assert.equal(values.keep, false);
  assert.equal(values["log-level"], "info");
});

Deno.test("parseCommandLine() converts given values to their types", () => {
  const values = parse([
    "--name=x",
    "--label",
    "",
    "--batch-size",
    " 42 ",
    "--limit",
    "9007199254740991",
    "--rate",
    "0.5",
    "--share=1",
    "--codec",
    "gzip",
    "--reset",
    "latest",
    "--keep",
  ]);
  assert.equal(values.label, "");
  assert.equal(values["batch-size"], 42);
  assert.equal(values.limit, Number.MAX_SAFE_INTEGER);
  assert.equal(values.rate, 0.5);
  assert.equal(values.share, 1);
  assert.equal(values.codec, "gzip");
  assert.equal(values.reset, "latest");
  assert.equal(values.keep, true);
});

Deno.test("parseCommandLine() checks ranges at both ends and whole numbers", () => {
  for (const bad of ["0", "100001", "1.5", "1e3", "", "x"]) {
    assert.equal(
      usage(["--name", "x", "--batch-size", bad]),
      `--batch-size must be a whole number from 1 to 100000, not "${bad}"`,
    );
  }
  for (const good of ["1", "100000"]) {
    assert.equal(parse(["--name", "x", "--batch-size", good])["batch-size"], Number(good));
  }
  assert.equal(
    usage(["--name", "x", "--share", "1.01"]),
    '--share must be a number from 0 to 1, not "1.01"',
  );
  assert.equal(
    usage(["--name", "x", "--limit", "9007199254740992"]),
    '--limit must be a whole number from 1 to 9007199254740991, not "9007199254740992"',
  );
});

Deno.test("parseCommandLine() refuses a word that is not a choice, and a missing required flag", () => {
  assert.equal(
    usage(["--name", "x", "--codec", "zstd"]),
    '--codec must be one of none, gzip, not "zstd"',
  );
  assert.equal(usage([]), "--name is required");
  assert.equal(usage(["--name", "  "]), "--name is required");
  assert.equal(usage(["--name", "a b"]), '--name "a b" has a space');
});

Deno.test("parseCommandLine() reports every problem at once, its own checks included", () => {
  const message = usage(
    ["--batch-size", "0", "--share", "2", "--codec", "x", "--log-level", "loud"],
    { check: (_values, problems) => problems.add("a rule across flags") },
  );
  assert.deepEqual(message.split("; "), [
    "--name is required",
    '--batch-size must be a whole number from 1 to 100000, not "0"',
    '--share must be a number from 0 to 1, not "2"',
    '--codec must be one of none, gzip, not "x"',
    '--log-level must be one of debug, info, warn, error, not "loud"',
    "a rule across flags",
  ]);
});

Deno.test("parseCommandLine() names the known flags for an unknown one, and hints at --flag=-value", () => {
  const unknown = usage(["--nmae", "x"]);
  assert.match(unknown, /^Unknown option '--nmae'; known flags: --name, --label, /);
  assert.match(unknown, /--keep, --help, --debug, --log-level$/);
  assert.match(
    usage(["stray"]),
    /^Unexpected argument 'stray'\. This command does not take positional arguments; known flags: --name/,
  );
  assert.match(
    usage(["--name", "x", "--share", "-1"]),
    /^--share got a value starting with "-": write it as --share=VALUE; known flags: /,
  );
  assert.equal(
    usage(["--name", "x", "--share=-1"]),
    '--share must be a number from 0 to 1, not "-1"',
  );
});

Deno.test("parseCommandLine() reads a flag's environment variable before its default", () => {
  assert.equal(parse(["--name", "x"], { get: () => "6000" }).port, 6000);
  assert.equal(parse(["--name", "x", "--port", "7000"], { get: () => "6000" }).port, 7000);
  assert.equal(
    usage(["--name", "x"], { env: { get: () => "70000" } }),
    '--port must be a whole number from 0 to 65535, not "70000"',
  );
});

Deno.test("parseCommandLine() prints the help for --help and returns undefined", () => {
  const printed: string[] = [];
  const log = console.log;
  console.log = (text: string) => printed.push(text);
  try {
    assert.equal(parseCommandLine(SPEC, ["--help"], { env: noEnv }), undefined);
  } finally {
    console.log = log;
  }
  assert.equal(printed.join("\n"), helpText(SPEC));
});

Deno.test("helpText() shows each default, range and choice from the spec's values", () => {
  const lines = helpText(SPEC).split("\n");
  const row = (flag: string) => lines.find((l) => l.trimStart().startsWith(`--${flag} `)) ?? "";
  assert.match(row("name"), /a required name \(required\)$/);
  assert.match(row("label"), /optional text$/);
  assert.match(row("mode"), /text with a default \(default: plain\)$/);
  assert.match(row("batch-size"), /rows per batch \(default: 5000; 1-100000\)$/);
  assert.match(row("limit"), /no default \(at least 1\)$/);
  assert.match(row("rate"), /per second \(default: as fast as possible; 0.01-1000\)$/);
  assert.match(row("codec"), /codec \(none \| gzip; default: none\)$/);
  assert.match(row("reset"), /where to \(earliest \| latest\)$/);
  assert.match(row("port"), /a port \(env SAMPLE_PORT; default: 55433; 0-65535\)$/);
  assert.match(row("keep"), /^ {2}--keep {25}a switch$/);
  assert.match(row("log-level"), /\(debug \| info \| warn \| error; default: info\)$/);
  assert.match(helpText(SPEC), /^sample: a command to test the parser\n\nUsage: sample \[flags\]/);
  assert.match(helpText(SPEC), /\n\nExamples:\n {2}sample --name x$/);
});

Deno.test("helpText() follows a changed default: the text comes from the same value", () => {
  const changed = defineCommand({
    ...SPEC,
    flags: { ...SPEC.flags, "batch-size": { ...SPEC.flags["batch-size"], default: 250, max: 500 } },
  });
  assert.match(helpText(changed), /rows per batch \(default: 250; 1-500\)/);
  assert.equal(parseCommandLine(changed, ["--name", "x"], { env: noEnv })?.["batch-size"], 250);
});
