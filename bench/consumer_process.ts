/**
 * Our consumer run as a subprocess (`deno run -A consumer.ts ...`), as in production: its summary
 * line, exit code and peak RSS.
 * @module
 */
import { join } from "node:path";
import { CONSUMER_SPEC } from "../lib/commands/consumer.ts";
import { CONSUMER_V8_FLAGS, defaultGroupId } from "../lib/pipeline/consumer.ts";
import { createKafka } from "../lib/kafka/kafka.ts";
import { PeakRssWatcher, progress, ROOT, type StackAccess, tail } from "./common.ts";
import { type ConsumerSummaryLine, parseConsumerSummary } from "./parse.ts";

/** How a consumer subprocess ended. */
export interface ConsumerRun {
  code: number;
  /** The parsed summary line; undefined when the consumer printed none. */
  summary?: ConsumerSummaryLine;
  /** Peak resident set size (VmHWM) of the consumer process, in MiB. */
  peakRssMiB: number;
  /** Wall time of the process. */
  seconds: number;
  stderr: string;
}

/** The consumer's command line; `--no-metrics-log` only where the consumer has that flag. */
export function consumerArgs(
  access: StackAccess,
  topic: string,
  table: string,
  idleTimeoutSeconds?: number,
  extraArgs: string[] = [],
): string[] {
  const args = [
    "run",
    "-A",
    CONSUMER_V8_FLAGS,
    join(ROOT, "consumer.ts"),
    "--creds",
    access.credsPath,
    "--topic-name",
    topic,
    "--table-name",
    table,
  ];
  if (idleTimeoutSeconds !== undefined) args.push("--idle-timeout", String(idleTimeoutSeconds));
  if ("no-metrics-log" in CONSUMER_SPEC.flags) args.push("--no-metrics-log");
  return [...args, ...extraArgs];
}

/** A running consumer subprocess. */
export class ConsumerProcess {
  readonly #child: Deno.ChildProcess;
  readonly #rss: PeakRssWatcher;
  readonly #started = performance.now();
  readonly #output: Promise<Deno.CommandOutput>;

  /** Starts `consumer.ts` on the topic and table; with an idle timeout it exits once drained. */
  constructor(
    access: StackAccess,
    readonly topic: string,
    readonly table: string,
    idleTimeoutSeconds?: number,
    extraArgs: string[] = [],
  ) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: consumerArgs(access, topic, table, idleTimeoutSeconds, extraArgs),
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#rss = new PeakRssWatcher(this.#child.pid);
    this.#output = this.#child.output();
  }

  /** The consumer group the consumer joins (the default of its table). */
  get groupId(): string {
    return defaultGroupId("public", this.table);
  }

  /** Process id of the consumer. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Sends a signal (SIGKILL for a crash); `wait()` reports what follows. */
  kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
  }

  /** Waits for the exit without judging it: the exit code (137 after SIGKILL) and stdout. */
  async exit(): Promise<{ code: number; stdout: string }> {
    const out = await this.#output;
    this.#rss.stop();
    return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
  }

  /** Asks the consumer to stop: it commits the batch in flight, prints its summary, exits 0. */
  stop(): void {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
  }

  /** Waits for the exit; returns the summary and peak RSS. */
  async wait(): Promise<ConsumerRun> {
    const out = await this.#output;
    const peakRssMiB = this.#rss.stop();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    const run: ConsumerRun = {
      code: out.code,
      summary: parseConsumerSummary(stdout),
      peakRssMiB,
      seconds: (performance.now() - this.#started) / 1000,
      stderr,
    };
    if (run.code !== 0 || !run.summary) {
      throw new Error(`consumer exited with code ${run.code}: ${tail(stderr || stdout, 5)}`);
    }
    return run;
  }

  /** Waits until the consumer is a member of a stable group, so published messages reach it. */
  async waitUntilJoined(access: StackAccess, timeoutMs = 60_000): Promise<void> {
    const admin = createKafka(access.connection.kafka).admin();
    await admin.connect();
    try {
      const deadline = performance.now() + timeoutMs;
      while (performance.now() < deadline) {
        const { groups } = await admin.describeGroups([this.groupId]);
        const group = groups[0];
        if (group?.state === "Stable" && group.members.length > 0) return;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`the consumer did not join group ${this.groupId} within ${timeoutMs} ms`);
    } finally {
      await admin.disconnect();
    }
  }
}

/** Starts a consumer and logs it. */
export function startConsumer(
  access: StackAccess,
  topic: string,
  table: string,
  idleTimeoutSeconds?: number,
): ConsumerProcess {
  progress(`consumer subprocess: topic ${topic}, table ${table}`);
  return new ConsumerProcess(access, topic, table, idleTimeoutSeconds);
}
