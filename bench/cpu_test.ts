import assert from "node:assert/strict";
import { CpuWatcher, describeDrainCpu, drainCpu, processCpuSeconds } from "./cpu.ts";

/** Spins a process for `seconds` of wall time: about that much CPU on an idle enough machine. */
function spin(seconds: number): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["eval", `const end = Date.now() + ${seconds * 1000}; while (Date.now() < end);`],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

Deno.test("processCpuSeconds() reads a live process's CPU time and nothing for a gone one", async () => {
  const child = spin(2);
  const pid = child.pid;
  await new Promise((r) => setTimeout(r, 1_200));
  const seconds = processCpuSeconds(pid);
  assert.ok(seconds !== undefined && seconds > 0.2, `spinning process used ${seconds} s`);
  await child.status;
  assert.equal(processCpuSeconds(pid), undefined);
});

Deno.test("CpuWatcher counts a process started during the watch whole, one running before from the start", async () => {
  const before = spin(3);
  await new Promise((r) => setTimeout(r, 1_000)); // ~1 s of CPU before the watch: not counted
  const later: Deno.ChildProcess[] = [];
  const watcher = new CpuWatcher({
    before: () => [before.pid],
    later: () => later.map((c) => c.pid),
  });
  await new Promise((r) => setTimeout(r, 300)); // past the watcher's first look
  later.push(spin(1.5)); // found at a later look, yet counted from its start
  await Promise.all([before.status, later[0]!.status]);
  const use = await watcher.stop();
  const b = use.seconds.before!;
  const l = use.seconds.later!;
  assert.ok(b > 0.5 && b < 2.7, `the earlier process counted ${b} s of its ~3`);
  assert.ok(l > 1.0, `the later process counted ${l} s of its ~1.5`);
  assert.ok(use.wallSeconds >= 1.5);
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
