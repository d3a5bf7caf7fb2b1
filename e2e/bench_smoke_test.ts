import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../testing/testing.ts";

/** Figures every smoke run must record as numbers, by section (no thresholds: tiny sizes). */
const FIGURES: Record<string, string[]> = {
  producer: [
    "ours.ticketsPerSecond",
    "naive.ticketsPerSecond",
    "producerPerformance.recordsPerSecond",
    "ratios.vsNaive",
    "ratios.vsProducerPerformance",
  ],
  sink: [
    "ours.ticketsPerSecond",
    "copy.ticketsPerSecond",
    "ours.rowsPerSecond",
    "oursParallel.rowsPerSecond",
    "rowAtATime.rowsPerSecond",
    "copy.rowsPerSecond",
    "ratios.vsRowAtATime",
    "ratios.vsCopy",
    // the backend CPU of the 1-connection path (its pid is asked); psql's and the parallel
    // pool's sessions may end before a tiny run's watcher looks for them
    "ours.serverCpuSeconds",
    "rounds.ours.1",
    "rounds.copy.1",
    // the same through the proxy adding a network's round trip
    "remote.roundTripMs",
    "remote.ours.ticketsPerSecond",
    "remote.copy.ticketsPerSecond",
    "remote.vsCopy",
  ],
  e2e: [
    "produce.ticketsPerSecond",
    "consume.ticketsPerSecond",
    "python.ticketsPerSecond",
    "ratios.vsPython",
    "consume.cpu.seconds.consumer",
    "consume.cpu.seconds.postgres",
    "consume.cpu.seconds.broker",
    "consume.cpu.coresBusy",
    // psql \copy of the drained rows into fresh tables
    "copy.ticketsPerSecond",
    "copy.rowsPerSecond",
    "ratios.vsCopy",
  ],
  latency: ["p50Ms", "p99Ms", "maxMs", "rows"],
  memory: ["consumerPeakRssMiB"],
  peer: [
    "ours.ticketsPerSecond",
    "ours.rowsPerSecond",
    "runs.0.ticketsPerSecond",
    "runs.0.firstRowSeconds",
    "runs.1.ticketsPerSecond",
    "runs.1.firstRowSeconds",
    "ratios.vsInsert",
    "ratios.vsUpsert",
    "ratios.vsBest",
  ],
  scale: [
    "runs.0.ticketsPerSecond",
    "runs.1.ticketsPerSecond",
    "runs.2.ticketsPerSecond",
    "runs.2.speedup",
    "runs.2.cpu.seconds.consumer",
    "runs.2.cpu.seconds.postgres",
    "restarts.0.exitSeconds",
    "restarts.0.restartToFirstRowSeconds",
    "restarts.1.exitSeconds",
    "restarts.1.restartToFirstRowSeconds",
  ],
};

function at(value: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>(
    (v, key) => (v as Record<string, unknown> | undefined)?.[key],
    value,
  );
}

Deno.test("bench/run.ts main() --smoke exits 0 and records every section's figures", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bench-smoke-" });
  try {
    const out = join(dir, "results.json");
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", join(ROOT, "bench/run.ts"), "--smoke", "--out", out],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, `bench/run.ts --smoke failed:\n${stderr}`);
    const results = JSON.parse(await Deno.readTextFile(out));
    assert.equal(results.smoke, true);
    for (const [section, paths] of Object.entries(FIGURES)) {
      const figures = results.sections[section];
      assert.ok(figures && !("error" in figures), `section ${section}: ${figures?.error}`);
      for (const path of paths) {
        const value = at(figures, path);
        assert.ok(
          typeof value === "number" && Number.isFinite(value),
          `${section}.${path} is ${value}`,
        );
      }
    }
    assert.equal(results.sections.sink.sameRows, true, "sink: writeBatch and \\copy, same rows");
    const { e2e } = results.sections;
    assert.equal(e2e.consume.exact, true, "every ticket stored exactly once");
    assert.equal(e2e.copy.tickets, e2e.consume.distinctRows, "\\copy loaded the drained tickets");
    assert.ok(e2e.copy.rows > 2 * e2e.copy.tickets, "\\copy loaded their seats and payments");
    const { peer, scale } = results.sections;
    assert.equal(peer.ours.exact, true, "peer: ours stored every ticket exactly once");
    assert.deepEqual(
      peer.runs.map((r: { mode: string; exact: boolean }) => [r.mode, r.exact]),
      [["insert", true], ["upsert", true]],
      "peer: the connector stored every ticket once in both modes",
    );
    assert.deepEqual(
      scale.runs.map((r: { members: number; exact: boolean }) => [r.members, r.exact]),
      [[1, true], [2, true], [3, true]],
      "scale: every drain exact",
    );
    assert.equal(scale.restartExact, true, "scale: the restart drain exact");
    assert.deepEqual(
      results.targets.map((t: { id: string; value: unknown }) => [t.id, typeof t.value]),
      [
        "producer.vsNaive",
        "producer.vsProducerPerformance",
        "sink.vsRowAtATime",
        "sink.vsCopy",
        "e2e.storedPerSecond",
        "e2e.vsPython",
        "e2e.vsCopy",
        "latency.p99",
        "memory.consumerPeakRss",
        "peer.vsDebezium",
        "peer.vsDebeziumFloor",
      ].map((id) => [id, "number"]),
      "every target judged on a figure of the run",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
