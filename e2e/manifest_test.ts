/**
 * The producer's lifecycle against the real broker and database: poison of every kind and
 * cancellations with a manifest, drained by the consumer and checked by `verify --manifest`
 * (which must also catch a tampered row or entry); the same seed gives the same manifest; and
 * every cancellation lands after its purchase in the same partition, as kcat reads the topic back.
 */
import assert from "node:assert/strict";
import { runConsumer } from "../lib/pipeline/consumer.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { type ManifestEntry, readManifest } from "../lib/pipeline/manifest.ts";
import { poisonKindNames } from "../lib/model/poison.ts";
import {
  collect,
  deleteTopics,
  runScript,
  sh,
  spawnScript,
  sql,
  stackInfo,
  waitFor,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

async function entriesOf(path: string): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = [];
  for await (const chunk of readManifest(path)) entries.push(...chunk);
  return entries;
}

async function verifyManifest(creds: string, table: string, manifest: string) {
  return await runScript("verify.ts", [
    ...["--creds", creds, "--table-name", table, "--manifest", manifest, "--examples", "5"],
  ]);
}

Deno.test("manifest round trip: every poison kind and cancellations end as the manifest says; verify --manifest exits 0, and 1 naming a tampered row or entry", async () => {
  await withPipeline("e2e_manifest", async ({ connection, topic, table, q }) => {
    const manifest = `${await Deno.makeTempDir()}/manifest.jsonl`;
    const summary = await runProducer({
      kafka: connection.kafka,
      topic,
      partitions: 3,
      num: 1500,
      seed: 16,
      batchSize: 100,
      cancelRate: 0.2,
      poisonRate: 0.3,
      manifest,
    });
    const entries = await entriesOf(manifest);
    assert.equal(entries.length, summary.sent);
    const kinds = new Set(entries.map((e) => e.kind));
    assert.deepEqual([...kinds].sort(), ["cancel", "purchase", ...poisonKindNames()].sort());
    await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });

    const creds = await writeStackCreds();
    const ok = await verifyManifest(creds, table, manifest);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, new RegExp(`manifest .*: ${entries.length} messages \\(.*SEAT_TAKEN`));
    assert.match(ok.stdout, /: 0 mismatches\nverify: OK/);

    // the database tampered with: a stored ticket marked cancelled
    const victim = entries.find((e) => e.kind === "purchase" && e.expect === "stored")!;
    await sql(`UPDATE ${q.tickets} SET status = 'cancelled' WHERE ticket_id = $1`, [victim.key]);
    const row = await verifyManifest(creds, table, manifest);
    assert.equal(row.code, 1, row.stdout + row.stderr);
    assert.match(row.stdout, /: 1 mismatches \(1 purchase\)/);
    assert.ok(
      row.stdout.includes(
        `${topic}/${victim.partition}@${victim.offset} purchase ${victim.key}: expected stored, ` +
          "status cancelled",
      ),
      row.stdout,
    );
    await sql(`UPDATE ${q.tickets} SET status = 'purchased' WHERE ticket_id = $1`, [victim.key]);

    // the manifest tampered with: one dead letter's reason
    const letter = entries.find((e) => e.kind === "bad-json")!;
    const tampered = `${manifest}.tampered`;
    const lines = (await Deno.readTextFile(manifest)).split("\n");
    const at = lines.indexOf(JSON.stringify(letter));
    lines[at] = JSON.stringify({ ...letter, reason: "BAD_SEAT" });
    await Deno.writeTextFile(tampered, lines.join("\n"));
    const entry = await verifyManifest(creds, table, tampered);
    assert.equal(entry.code, 1, entry.stdout + entry.stderr);
    assert.match(entry.stdout, /: 1 mismatches \(1 bad-json\)/);
    assert.ok(
      entry.stdout.includes(
        `${topic}/${letter.partition}@${letter.offset} bad-json ${letter.key}: expected ` +
          "BAD_SEAT, dead letter BAD_JSON",
      ),
      entry.stdout,
    );
  });
});

Deno.test("the same seed gives the same manifest (producer run twice as a script)", async () => {
  await withPipeline("e2e_manifest_seed", async ({ topic, connection }) => {
    const creds = await writeStackCreds();
    const dir = await Deno.makeTempDir();
    const other = `${topic}_again`;
    try {
      const manifests = [];
      for (const t of [topic, other]) {
        const path = `${dir}/${t}.jsonl`;
        const run = await runScript("producer.ts", [
          ...["--creds", creds, "--topic-name", t, "--num", "800", "--seed", "8"],
          ...["--batch-size", "50", "--cancel-rate", "0.3", "--poison-rate", "0.3"],
          ...["--manifest", path, "--no-metrics-log"],
        ]);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /by kind: .*\d+ cancel.*\d+ seat-clash/);
        manifests.push((await entriesOf(path)).map(({ topic: _, ...e }) => e));
      }
      assert.ok(manifests[0]!.length > 800);
      assert.deepEqual(manifests[0], manifests[1]);
    } finally {
      await deleteTopics(connection, [other]);
    }
  });
});

Deno.test("with --cancel-rate and 8 requests in flight, kcat reads every cancellation after its purchase in the same partition", async () => {
  await withPipeline("e2e_cancel_order", async ({ connection, topic }) => {
    const summary = await runProducer({
      kafka: connection.kafka,
      topic,
      partitions: 4,
      num: 3000,
      batchSize: 25,
      inFlight: 8,
      cancelRate: 0.5,
    });
    const out = await sh(
      `kcat -b ${stackInfo().kafka.plaintext} -C -t ${topic} -e -q -f '%p\\t%o\\t%k\\t%s\\n'`,
    );
    const purchases = new Map<string, [number, number]>();
    const cancels: [string, number, number][] = [];
    for (const line of out.split("\n").filter(Boolean)) {
      const [p, o, key, value] = line.split("\t") as [string, string, string, string];
      const message = JSON.parse(value);
      if (message.type === "cancel") {
        assert.equal(message.ticket_id, key);
        cancels.push([key, Number(p), Number(o)]);
      } else purchases.set(key, [Number(p), Number(o)]);
    }
    assert.equal(purchases.size, 3000);
    assert.equal(cancels.length, summary.kinds!.cancel);
    assert.ok(cancels.length > 1200 && cancels.length < 1800, String(cancels.length));
    assert.equal(new Set(cancels.map(([key]) => key)).size, cancels.length);
    for (const [key, p, o] of cancels) {
      const purchase = purchases.get(key);
      assert.ok(purchase, `cancel of ${key} without its purchase`);
      assert.equal(purchase[0], p, `cancel of ${key} in another partition`);
      assert.ok(
        purchase[1] < o,
        `cancel of ${key} at ${p}@${o} before its purchase (${purchase[1]})`,
      );
    }
  });
});

Deno.test("a continuous run stopped with SIGTERM still sends the cancellations it owes: the manifest matches", async () => {
  await withPipeline("e2e_manifest_stop", async ({ connection, topic, table }) => {
    const creds = await writeStackCreds();
    const manifest = `${await Deno.makeTempDir()}/manifest.jsonl`;
    const child = spawnScript("producer.ts", [
      ...["--creds", creds, "--topic-name", topic, "--continuous", "--rate", "3000"],
      ...["--batch-size", "100", "--cancel-rate", "0.5", "--poison-rate", "0.1"],
      ...["--manifest", manifest, "--no-metrics-log", "--seed", "5"],
    ]);
    const output = collect(child);
    await waitFor("a few thousand messages", async () => {
      const out = await sh(
        `kcat -b ${stackInfo().kafka.plaintext} -C -t ${topic} -e -q -c 3000 -f 'x\\n'`,
      );
      return out.length >= 6000;
    });
    child.kill("SIGTERM");
    const status = await output.done;
    assert.equal(status.code, 0, output.stderr());
    const entries = await entriesOf(manifest);
    const cancelled = entries.filter((e) => e.kind === "purchase" && e.expect === "cancelled");
    const cancels = new Set(entries.filter((e) => e.kind === "cancel").map((e) => e.key));
    assert.ok(cancelled.length > 100, String(cancelled.length));
    assert.deepEqual(cancelled.filter((e) => !cancels.has(e.key)), []);
    await runConsumer({ connection, topic, table, idleTimeoutSeconds: 3 });
    const verify = await verifyManifest(creds, table, manifest);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
