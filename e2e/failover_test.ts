/**
 * Failover and stopping: a member killed with SIGKILL is replaced within seconds, and SIGTERM
 * ends a consumer within 10 s in every state (joining, writing a batch, waiting for PostgreSQL),
 * with the batch in flight committed or rolled back, never half. Each case ends with the exact
 * table checked against the topic.
 */
import assert from "node:assert/strict";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import {
  collect,
  consumerArgs,
  consumerCounts,
  type PipelineCase,
  runScript,
  spawnScript,
  sql,
  stack,
  waitFor,
  waitForSessionsGone,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";
import { verifyPipeline } from "../lib/commands/verify.ts";

async function rowCount(c: PipelineCase): Promise<number> {
  const [row] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${c.q.tickets}`);
  return row!.n;
}

/** Sum of the group's stored offsets (1-partition topics: the next offset to read). */
async function storedTotal(c: PipelineCase): Promise<number> {
  const [row] = await sql<{ n: number }>(
    `SELECT coalesce(sum(next_offset), 0)::int AS n FROM ${c.q.offsets} WHERE group_id = $1`,
    [defaultGroupId("public", c.table)],
  );
  return row!.n;
}

/** The table holds exactly the topic's tickets. */
async function assertExact(c: PipelineCase, expected: number): Promise<void> {
  const report = await verifyPipeline({ connection: c.connection, topic: c.topic, table: c.table });
  assert.deepEqual(
    [report.missing.length, report.extra.length, report.mismatched.length, report.tickets],
    [0, 0, 0, expected],
  );
  assert.equal(await rowCount(c), expected);
}

function args(c: PipelineCase, creds: string, ...extra: string[]): string[] {
  return consumerArgs({ creds, topic: c.topic, table: c.table }, ...extra);
}

/** Seconds from now until `child` ends (its status). */
async function secondsToExit(done: Promise<Deno.CommandStatus>) {
  const from = performance.now();
  const status = await done;
  return { status, seconds: (performance.now() - from) / 1000 };
}

Deno.test("after SIGKILL of a member, a restarted member stores again within 15 s; exactly once", async () => {
  await withPipeline("failover", async (c) => {
    const creds = await writeStackCreds();
    const total = 80_000;
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: total, partitions: 3 });
    const first = spawnScript("consumer.ts", args(c, creds, "--batch-size", "500"));
    await waitFor("first rows", async () => (await rowCount(c)) >= 5_000);
    first.kill("SIGKILL");
    await first.status;
    await first.stdout.cancel();
    await first.stderr.cancel();
    await waitForSessionsGone(defaultGroupId("public", c.table));
    const before = await rowCount(c);
    assert.ok(before < total, `all ${before} rows stored before the kill`);
    const restarted = performance.now();
    const second = collect(
      spawnScript("consumer.ts", args(c, creds, "--batch-size", "500", "--idle-timeout", "3")),
    );
    await waitFor("the restarted member's first row", async () => (await rowCount(c)) > before);
    const failover = (performance.now() - restarted) / 1000;
    console.log(`failover: first new row ${failover.toFixed(1)} s after the restart`);
    assert.ok(failover < 15, `first new row only after ${failover.toFixed(1)} s`);
    const status = await second.done;
    assert.equal(status.code, 0, second.stderr());
    const counts = consumerCounts(second.stdout());
    assert.deepEqual(
      [counts.received, counts.stored, counts.duplicates, counts.fenced],
      [total - before, total - before, 0, 0],
    );
    await assertExact(c, total);
  });
});

Deno.test("SIGTERM while joining a group that waits for a dead member: exit 0 within 10 s, nothing written", async () => {
  await withPipeline("termjoin", async (c) => {
    const creds = await writeStackCreds();
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 20_000, partitions: 1 });
    const dead = spawnScript(
      "consumer.ts",
      args(c, creds, "--batch-size", "200", "--session-timeout", "16"),
    );
    await waitFor("first rows", async () => (await rowCount(c)) > 0);
    dead.kill("SIGKILL");
    await dead.status;
    await dead.stdout.cancel();
    await dead.stderr.cancel();
    await waitForSessionsGone(defaultGroupId("public", c.table));
    const before = await storedTotal(c);
    // the group waits up to the dead member's session timeout (16 s) for it: this one joins
    const joining = spawnScript("consumer.ts", args(c, creds));
    const out = collect(joining);
    await new Promise((r) => setTimeout(r, 4_000));
    joining.kill("SIGTERM");
    const { status, seconds } = await secondsToExit(out.done);
    assert.ok(seconds < 10, `exit took ${seconds.toFixed(1)} s`);
    assert.equal(status.code, 0, out.stderr());
    assert.deepEqual(consumerCounts(out.stdout()).received, 0);
    assert.equal(await storedTotal(c), before);
    assert.equal(await rowCount(c), before);
    // and the rest is stored by the next run, exactly once
    const rest = await runScript("consumer.ts", args(c, creds, "--idle-timeout", "3"));
    assert.equal(rest.code, 0, rest.stderr);
    await assertExact(c, 20_000);
  });
});

Deno.test("SIGTERM with a batch in flight: exit 0 within 10 s, every batch committed whole; a rerun completes exactly", async () => {
  await withPipeline("termbatch", async (c) => {
    const creds = await writeStackCreds();
    const total = 150_000;
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: total, partitions: 1 });
    const child = spawnScript("consumer.ts", args(c, creds, "--batch-size", "5000"));
    const out = collect(child);
    await waitFor("rows being written", async () => (await rowCount(c)) >= 10_000);
    child.kill("SIGTERM");
    const { status, seconds } = await secondsToExit(out.done);
    assert.ok(seconds < 10, `exit took ${seconds.toFixed(1)} s`);
    assert.equal(status.code, 0, out.stderr());
    const counts = consumerCounts(out.stdout());
    const rows = await rowCount(c);
    // what the summary says is what is stored, and the stored offset covers exactly those rows:
    // a chunk is in whole or not at all (chunks follow fetches, so their sizes vary)
    assert.equal(counts.stored, rows);
    assert.equal(await storedTotal(c), rows);
    assert.ok(rows < total, "everything was stored before the signal");
    const rest = await runScript("consumer.ts", args(c, creds, "--idle-timeout", "3"));
    assert.equal(rest.code, 0, rest.stderr);
    assert.deepEqual(consumerCounts(rest.stdout).duplicates, 0);
    await assertExact(c, total);
  });
});

Deno.test("SIGTERM while waiting for PostgreSQL: exit within 10 s with the reason, nothing half written", async () => {
  await withPipeline("termdb", async (c) => {
    const creds = await writeStackCreds();
    const total = 60_000;
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: total, partitions: 1 });
    const child = spawnScript("consumer.ts", args(c, creds, "--batch-size", "1000"));
    const out = collect(child);
    try {
      await waitFor("first rows", async () => (await rowCount(c)) >= 3_000);
      await stack("down", "postgres");
      await waitFor(
        "a failed write",
        () => Promise.resolve(/failed \(attempt 1\)/.test(out.stderr())),
      );
      child.kill("SIGTERM");
      const { status, seconds } = await secondsToExit(out.done);
      assert.ok(seconds < 10, `exit took ${seconds.toFixed(1)} s`);
      assert.equal(status.code, 1, out.stderr());
      assert.match(out.stderr(), /^error: stopped while PostgreSQL was failing/m);
    } finally {
      await stack("up", "postgres");
    }
    const rows = await rowCount(c);
    assert.equal(await storedTotal(c), rows);
    const rest = await runScript("consumer.ts", args(c, creds, "--idle-timeout", "3"));
    assert.equal(rest.code, 0, rest.stderr);
    assert.deepEqual(consumerCounts(rest.stdout).duplicates, 0);
    await assertExact(c, total);
  });
});
