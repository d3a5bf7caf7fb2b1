/**
 * CPU time spent by the processes of a run, read from /proc (the bench's stack runs on this
 * machine): a process by pid, PostgreSQL backends by their `application_name`, and the share of
 * the machine's CPU time its virtual machine's host kept meanwhile (steal: a noise gauge). Each
 * process is sampled every 100 ms while the run lasts, so a process that exits loses at most its
 * last 100 ms. Linux only: elsewhere the figures are undefined.
 * @module
 */
import { join } from "node:path";
import { consumerApplicationName } from "../lib/pipeline/consumer.ts";
import { type Database, storedApplicationName } from "../lib/postgres/postgres.ts";
import { type CleanupScope, openDatabase, ROOT, type StackAccess } from "./common.ts";

/** Clock ticks a second of the CPU times in /proc (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/** A process's CPU time so far and when it started (which tells a reused pid apart). */
interface ProcessTimes {
  cpuSeconds: number;
  /** Clock ticks after boot at which it started. */
  startTicks: number;
}

function processTimes(pid: number): ProcessTimes | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // the command name (field 2) may hold spaces or parentheses: count from its closing one,
    // so fields[0] is field 3 (state), utime field 14, stime 15, starttime 22
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / USER_HZ;
    const startTicks = Number(fields[19]);
    return Number.isFinite(cpuSeconds) && Number.isFinite(startTicks)
      ? { cpuSeconds, startTicks }
      : undefined;
  } catch {
    return undefined;
  }
}

/** utime + stime of a process, in seconds; undefined once it has exited (or off Linux). */
export function processCpuSeconds(pid: number): number | undefined {
  return processTimes(pid)?.cpuSeconds;
}

/** The machine's CPU time since boot, in seconds summed over its cores. */
interface MachineTimes {
  total: number;
  steal: number;
}

function machineTimes(): MachineTimes | undefined {
  try {
    const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/)
      .slice(1, 9).map((v) => Number(v) / USER_HZ);
    return {
      total: user! + nice! + system! + idle! + iowait! + irq! + softirq! + (steal ?? 0),
      steal: steal ?? 0,
    };
  } catch {
    return undefined;
  }
}

/** Where a group's processes come from: fixed pids, or found anew while the run lasts. */
export type PidSource = () => number[] | Promise<number[]>;

/** What {@linkcode CpuWatcher.stop} returns. */
export interface CpuUse {
  /** CPU seconds per group (undefined when none of its processes could be read). */
  seconds: Record<string, number | undefined>;
  wallSeconds: number;
  /** Share of the machine's CPU time (all cores) over the run that its host kept (steal). */
  stealShare?: number;
}

/**
 * Samples the CPU time of groups of processes. A process already running when the watch starts
 * counts from then on; one started later counts whole (its start-up belongs to the run).
 */
export class CpuWatcher {
  readonly #sources: [string, PidSource][];
  /** pid -> its group, CPU seconds at the start of the watch (0 if started later), last seen. */
  readonly #seen = new Map<
    number,
    { group: string; from: number; last: number; startTicks: number }
  >();
  readonly #machineAtStart = machineTimes();
  readonly #startedAt = performance.now();
  readonly #timer: ReturnType<typeof setInterval>;
  #first = true;
  #finding?: Promise<void>;
  #ticks = 0;

  constructor(sources: Record<string, PidSource>, readonly intervalMs = 100) {
    this.#sources = Object.entries(sources);
    this.#look();
    this.#timer = setInterval(() => this.#tick(), intervalMs);
  }

  /** Looks for the groups' processes (every 5th tick: finding may take a query). */
  async #find(): Promise<void> {
    for (const [group, source] of this.#sources) {
      let pids: number[];
      try {
        pids = await source();
      } catch {
        continue; // e.g. the database is busy restarting: try again next time
      }
      for (const pid of pids) {
        if (this.#seen.has(pid)) continue;
        const now = processTimes(pid);
        if (now === undefined) continue;
        const cpu = now.cpuSeconds;
        this.#seen.set(pid, {
          group,
          from: this.#first ? cpu : 0,
          last: cpu,
          startTicks: now.startTicks,
        });
      }
    }
    this.#first = false;
  }

  #sample(): void {
    for (const [pid, entry] of this.#seen) {
      const now = processTimes(pid);
      // a pid reused by a later process is not the one watched
      if (now !== undefined && now.startTicks === entry.startTicks) entry.last = now.cpuSeconds;
    }
  }

  /** Starts a look for new processes unless one is under way. */
  #look(): void {
    if (this.#finding) return;
    this.#finding = this.#find().finally(() => this.#finding = undefined);
  }

  #tick(): void {
    this.#sample();
    if (++this.#ticks % 5 === 0) this.#look();
  }

  /** Takes a last sample and stops; the CPU seconds per group since the watch started. */
  async stop(): Promise<CpuUse> {
    clearInterval(this.#timer);
    await this.#finding;
    this.#sample();
    const seconds: Record<string, number | undefined> = {};
    for (const [group] of this.#sources) seconds[group] = undefined;
    for (const { group, from, last } of this.#seen.values()) {
      seconds[group] = (seconds[group] ?? 0) + last - from;
    }
    const wallSeconds = (performance.now() - this.#startedAt) / 1000;
    const start = this.#machineAtStart;
    const end = machineTimes();
    if (!start || !end || end.total <= start.total) return { seconds, wallSeconds };
    return {
      seconds,
      wallSeconds,
      stealShare: (end.steal - start.steal) / (end.total - start.total),
    };
  }
}

/** The pids of the PostgreSQL backends whose application_name is `name`. */
export function backendsNamed(db: Database, name: string): PidSource {
  const stored = storedApplicationName(name);
  return async () => {
    const { rows } = await db.pool.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
      [stored],
    );
    return rows.map((r) => r.pid);
  };
}

/** The local broker's pid, from the stack's pid file; none when it cannot be read. */
export function brokerPid(pidFile: string): PidSource {
  return () => {
    try {
      const pid = Number(Deno.readTextFileSync(pidFile).trim());
      return Number.isInteger(pid) && pid > 0 ? [pid] : [];
    } catch {
      return [];
    }
  };
}

/** µs a ticket as shown in the report: the number, or "?" without a figure. */
export function microsText(micros: number | undefined): string {
  return micros === undefined ? "?" : String(micros);
}

/** Microseconds of CPU a ticket; undefined without a figure. */
export function microsPerTicket(seconds: number | undefined, tickets: number): number | undefined {
  return seconds === undefined || tickets <= 0 ? undefined : Math.round(seconds / tickets * 1e6);
}

/**
 * Where a drain's CPU went: seconds of the consumer process (its whole life: start-up and idle
 * timeout included), of the PostgreSQL backends serving it and of the broker, each also in µs a
 * consumed ticket; `coresBusy` = their sum ÷ the drain's seconds; `stealShare` of the machine.
 */
export interface DrainCpu {
  seconds: { consumer?: number; postgres?: number; broker?: number };
  microsPerTicket: { consumer?: number; postgres?: number; broker?: number };
  coresBusy?: number;
  stealShare?: number;
}

/** A drain's {@linkcode DrainCpu} from a watch of groups `consumer`, `postgres` and `broker`. */
export function drainCpu(use: CpuUse, tickets: number, drainSeconds: number): DrainCpu | undefined {
  const { consumer, postgres, broker } = use.seconds;
  if (consumer === undefined && postgres === undefined) return undefined;
  const known = [consumer, postgres, broker].filter((s) => s !== undefined);
  return {
    seconds: { consumer, postgres, broker },
    microsPerTicket: {
      consumer: microsPerTicket(consumer, tickets),
      postgres: microsPerTicket(postgres, tickets),
      broker: microsPerTicket(broker, tickets),
    },
    coresBusy: drainSeconds > 0 ? known.reduce((a, b) => a + b, 0) / drainSeconds : undefined,
    stealShare: use.stealShare,
  };
}

/** One line: µs of CPU a ticket per process, the cores they kept busy, the steal. */
export function describeDrainCpu(cpu: DrainCpu): string {
  const m = cpu.microsPerTicket;
  const steal = cpu.stealShare === undefined ? "?" : `${(cpu.stealShare * 100).toFixed(1)}%`;
  return `consumer ${microsText(m.consumer)} / PostgreSQL ${microsText(m.postgres)} / broker ${
    microsText(m.broker)
  } µs a ticket; ${cpu.coresBusy?.toFixed(2) ?? "?"} cores busy; steal ${steal}`;
}

/**
 * Watches a drain by consumer processes of group `groupId`: the processes, the group's PostgreSQL
 * sessions and the stack's broker. `stop` gives the drain's {@linkcode DrainCpu}.
 */
export async function watchDrain(
  access: StackAccess,
  scope: CleanupScope,
  consumerPids: PidSource,
  groupId: string,
): Promise<{ stop(tickets: number, drainSeconds: number): Promise<DrainCpu | undefined> }> {
  const db = await openDatabase(access, 1);
  scope.add(`close the CPU watcher's pool of ${groupId}`, () => db.pool.end());
  const watcher = new CpuWatcher({
    consumer: consumerPids,
    postgres: backendsNamed(db, consumerApplicationName(groupId)),
    broker: brokerPid(join(ROOT, ".stack", "kafka", "kafka.pid")),
  });
  return {
    stop: async (tickets, drainSeconds) => drainCpu(await watcher.stop(), tickets, drainSeconds),
  };
}
