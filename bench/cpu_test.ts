import assert from "node:assert/strict";
import { CpuWatcher, describeDrainCpu, drainCpu, processCpuSeconds } from "./cpu.ts";

/**
 * A process that spins for `seconds` of wall time, then prints the CPU time it used (its own
 * account, from the runtime): the truth the readings from /proc are checked against, however
 * little CPU a loaded machine gives it.
 */
function spin(seconds: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const end = Date.now() + ${seconds * 1000}; while (Date.now() < end);
       const { default: process } = await import("node:process");
       const u = process.cpuUsage(); console.log((u.user + u.system) / 1e6);`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const cpuSeconds = child.output().then((out) => Number(new TextDecoder().decode(out.stdout)));
  return { pid: child.pid, cpuSeconds };
}

/** What a 100 ms sampler may miss at the end, plus /proc's 10 ms ticks and start-up skew. */
const TOLERANCE_SECONDS = 0.25;

Deno.test("processCpuSeconds() reads a live process's CPU time and nothing for a gone one", async () => {
  const child = spin(1.5);
  await new Promise((r) => setTimeout(r, 1_000));
  const seconds = processCpuSeconds(child.pid);
  const total = await child.cpuSeconds;
  assert.ok(seconds !== undefined && seconds > 0, `read ${seconds} s`);
  assert.ok(seconds <= total + 0.02, `read ${seconds} s of a process that used ${total} s`);
  assert.equal(processCpuSeconds(child.pid), undefined);
});

Deno.test("CpuWatcher counts a process started during the watch whole, one running before from the start", async () => {
  const before = spin(2.5);
  await new Promise((r) => setTimeout(r, 800));
  const beforeAtStart = processCpuSeconds(before.pid)!; // not the watch's
  const later: ReturnType<typeof spin>[] = [];
  const watcher = new CpuWatcher({
    before: () => [before.pid],
    later: () => later.map((c) => c.pid),
  });
  await new Promise((r) => setTimeout(r, 300)); // past the watcher's first look
  later.push(spin(1)); // found at a later look, yet counted from its start
  const [beforeTotal, laterTotal] = await Promise.all([before.cpuSeconds, later[0]!.cpuSeconds]);
  const use = await watcher.stop();
  const b = use.seconds.before!;
  const l = use.seconds.later!;
  const expectedB = beforeTotal - beforeAtStart;
  assert.ok(Math.abs(b - expectedB) < TOLERANCE_SECONDS, `counted ${b} s, expected ${expectedB}`);
  assert.ok(Math.abs(l - laterTotal) < TOLERANCE_SECONDS, `counted ${l} s, used ${laterTotal}`);
  assert.ok(laterTotal > 0.2, `the later process used only ${laterTotal} s`);
  assert.ok(use.wallSeconds >= 1.3);
  assert.ok(use.stealShare !== undefined && use.stealShare >= 0 && use.stealShare < 1);
});

Deno.test("drainCpu() gives µs a ticket and the cores busy; unknown groups stay unknown", () => {
  const cpu = drainCpu(
    { seconds: { consumer: 6, postgres: 8, broker: undefined }, wallSeconds: 14 },
    200_000,
    10,
  )!;
  assert.deepEqual(cpu.microsPerTicket, { consumer: 30, postgres: 40, broker: undefined });
  assert.equal(cpu.coresBusy, 1.4);
  assert.equal(
    describeDrainCpu(cpu),
    "consumer 30 / PostgreSQL 40 / broker ? µs a ticket; 1.40 cores busy; steal ?",
  );
  assert.equal(drainCpu({ seconds: {}, wallSeconds: 1 }, 10, 1), undefined);
});
