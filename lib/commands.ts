/**
 * Every command of the suite, each a function from its command line to an exit code: the entry
 * scripts run them, the demo calls them as a user would type them. A command's module is loaded
 * when it runs, so a process loads only what its command needs (the consumer, for one, never
 * loads the ticket generator and faker).
 * @module
 */

/** A command: its arguments in, its exit code out (errors are thrown, see `exitWith`). */
export type Command = (args: string[]) => Promise<number>;

/** A command whose module is imported at its first run. */
function lazy(load: () => Promise<Command>): Command {
  return async (args) => (await load())(args);
}

/** The commands by name, as `deno task NAME` runs them. */
export const COMMANDS = {
  auth_setup: lazy(async () => (await import("./commands/auth_setup.ts")).authSetup),
  db_setup: lazy(async () => (await import("./commands/db_setup.ts")).run),
  producer: lazy(async () => (await import("./commands/producer.ts")).run),
  consumer: lazy(async () => (await import("./commands/consumer.ts")).run),
  tests: lazy(async () => (await import("./commands/tests.ts")).selfTest),
  verify: lazy(async () => (await import("./commands/verify.ts")).verify),
  dlq: lazy(async () => (await import("./commands/dlq.ts")).deadLetters),
  report: lazy(async () => (await import("./commands/report.ts")).run),
} satisfies Record<string, Command>;
