/**
 * End-to-end: `deno task demo` on the embedded PostgreSQL (PGlite) stores, cancels and refuses
 * exactly what its producer's manifest says (cancel and poison rates on), in well under the 3
 * minutes allowed; and the embedded server keeps each connection's protocol exchange and
 * transaction to itself.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import pg from "pg";
import { startEmbeddedPostgres } from "../dev/embedded_pg.ts";
import { defaultGroupId } from "../lib/pipeline/consumer.ts";
import { readManifest } from "../lib/pipeline/manifest.ts";
import { createPool } from "../lib/postgres/postgres.ts";
import { qualify } from "../lib/postgres/schema.ts";
import {
  deleteTopics,
  ROOT,
  runScript,
  stackConnection,
  stackInfo,
  uniqueSuffix,
} from "../testing/testing.ts";

const DEMO_LIMIT_SECONDS = 180;

async function stackCommand(...args: string[]): Promise<{ success: boolean; output: string }> {
  const out = await new Deno.Command("bash", {
    args: [join(ROOT, "dev/stack.sh"), ...args],
    env: { DENO: Deno.execPath() },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { success: out.success, output: text };
}

/** What the demo's manifest says must be in the database. */
interface Expected {
  entries: number;
  /** Ticket ids stored as purchased, and those cancelled. */
  stored: Set<string>;
  cancelled: Set<string>;
  /** Dead letters as `partition@offset REASON`, sorted. */
  letters: string[];
  byReason: Record<string, number>;
  /** Cancellations sent again on purpose: counted duplicates. */
  doubleCancels: number;
}

async function expectedOf(manifest: string): Promise<Expected> {
  const e: Expected = {
    entries: 0,
    stored: new Set(),
    cancelled: new Set(),
    letters: [],
    byReason: {},
    doubleCancels: 0,
  };
  for await (const chunk of readManifest(manifest)) {
    for (const entry of chunk) {
      e.entries++;
      if (entry.kind === "double-cancel") e.doubleCancels++;
      if (entry.expect === "dead_letter") {
        e.letters.push(`${entry.partition}@${entry.offset} ${entry.reason}`);
        e.byReason[entry.reason!] = (e.byReason[entry.reason!] ?? 0) + 1;
      } else if (entry.kind === "purchase") {
        (entry.expect === "stored" ? e.stored : e.cancelled).add(entry.key!);
      }
    }
  }
  e.letters.sort();
  return e;
}

Deno.test("runDemo() stores, cancels and refuses exactly what its manifest says in the embedded PostgreSQL, in time", async (t) => {
  const suffix = uniqueSuffix();
  const topic = `demo_embedded_${suffix}`;
  const table = `demo_embedded_${suffix}`;
  const num = 2000;
  const dir = await Deno.makeTempDir({ prefix: "tickets-demo-" });
  const creds = join(dir, "creds.json");
  const manifest = join(dir, "manifest.jsonl");
  const wasRunning = (await stackCommand("status", "embedded")).success;
  let uri: string | undefined;
  let expected: Expected | undefined;
  try {
    await t.step(
      "the demo stores the tickets in the embedded database within 3 minutes, as the manifest says",
      async () => {
        const started = performance.now();
        const demo = await runScript("dev/demo.ts", [
          ...["--num", String(num), "--topic-name", topic, "--table-name", table],
          ...["--creds", creds, "--manifest", manifest],
        ]);
        const seconds = (performance.now() - started) / 1000;
        assert.equal(demo.code, 0, `demo failed:\n${demo.stdout}\n${demo.stderr}`);
        console.log(`demo of ${num} tickets on the embedded PostgreSQL: ${seconds.toFixed(1)} s`);
        assert.ok(seconds < DEMO_LIMIT_SECONDS, `the demo took ${seconds.toFixed(1)} s`);
        assert.match(demo.stdout, /PostgreSQL \d+\.\d+, NOT encrypted/); // PGlite, not the SSL server
        uri = (stackInfo() as { embeddedPostgresUri?: string }).embeddedPostgresUri;
        assert.ok(uri, ".stack/stack.json has an embeddedPostgresUri");
        const e = expected = await expectedOf(manifest);
        // the demo's default rates: some cancellations, some poison of several kinds
        assert.ok(e.cancelled.size > 0 && e.letters.length > 0, JSON.stringify(e.byReason));
        assert.match(demo.stdout, /--cancel-rate 0\.02 --poison-rate 0\.01 --manifest /);
        const rows = e.stored.size + e.cancelled.size;
        const report = `in ${uri.replace(/\?.*$/, "")}: ${rows} rows; stored ${e.stored.size}, ` +
          `cancelled ${e.cancelled.size} (refunded ${e.cancelled.size}); conflicts: 0`;
        assert.ok(demo.stdout.includes(report), `the report says ${report}:\n${demo.stdout}`);
        const reasons = Object.entries(e.byReason).map(([reason, n]) => `${n} ${reason}`);
        const letters = new RegExp(`^dead letters: ${e.letters.length} \\((.*)\\)$`, "m")
          .exec(demo.stdout)?.[1];
        assert.deepEqual(letters?.split(", ").sort(), reasons.sort(), demo.stdout);
        assert.match(demo.stdout, /: 0 mismatches\nverify: OK, every outcome matches the manifest/);
        assert.match(
          demo.stdout,
          new RegExp(
            `^consumed ${e.entries} messages .*: stored ${rows}, cancelled ${e.cancelled.size}, ` +
              `duplicates ${e.doubleCancels}, conflicts 0, dead letters ${e.letters.length}[ ,]`,
            "m",
          ),
        );
      },
    );

    await t.step("verify finds the table equal to the topic", async () => {
      const verify = await runScript("verify.ts", [
        "--topic-name",
        topic,
        "--table-name",
        table,
        "--postgres-uri",
        uri!,
        "--creds",
        creds,
      ]);
      const e = expected!;
      assert.equal(verify.code, 0, `verify failed:\n${verify.stdout}\n${verify.stderr}`);
      assert.match(verify.stdout, /verify: OK/);
      assert.match(verify.stdout, new RegExp(`topic ${topic}: ${e.entries} messages`));
      assert.match(
        verify.stdout,
        new RegExp(
          `: ${e.stored.size + e.cancelled.size} rows \\(${e.cancelled.size} cancelled\\); ` +
            `dead letters for this group and topic: ${e.letters.length} `,
        ),
      );
    });

    await t.step(
      "every ticket, seat, payment and dead letter is the manifest's, none more",
      async () => {
        const db = await createPool({ uri: uri!, max: 1 });
        const e = expected!;
        try {
          const q = qualify({ schema: "public", table });
          const group = defaultGroupId("public", table);
          const ids = async (sql: string) =>
            new Set((await db.pool.query<{ id: string }>(sql)).rows.map((r) => r.id));
          assert.deepEqual(
            await ids(`SELECT ticket_id AS id FROM ${q.tickets} WHERE status = 'purchased'`),
            e.stored,
          );
          assert.deepEqual(
            await ids(`SELECT ticket_id AS id FROM ${q.tickets} WHERE status = 'cancelled'`),
            e.cancelled,
          );
          assert.deepEqual(await ids(`SELECT DISTINCT ticket_id AS id FROM ${q.seats}`), e.stored);
          assert.deepEqual(
            await ids(`SELECT ticket_id AS id FROM ${q.transactions} WHERE status = 'REFUNDED'`),
            e.cancelled,
          );
          assert.deepEqual(
            await ids(`SELECT ticket_id AS id FROM ${q.transactions} WHERE status = 'PAID'`),
            e.stored,
          );
          const { rows: letters } = await db.pool.query<{ at: string }>(
            `SELECT partition || '@' || "offset" || ' ' || reason AS at FROM ${q.deadLetters}
             WHERE group_id = $1 ORDER BY 1`,
            [group],
          );
          assert.deepEqual(letters.map((l) => l.at).sort(), e.letters, "dead letters");
          const { rows: [c] } = await db.pool.query<{ offsets: string; conflicts: number }>(
            `SELECT (SELECT sum(next_offset)::text FROM ${q.offsets} WHERE group_id = $1) AS offsets,
               (SELECT count(*)::int FROM ${q.conflicts} WHERE target_table = $2) AS conflicts`,
            [group, table],
          );
          assert.equal(Number(c!.offsets), e.entries, "stored offsets cover every message");
          assert.equal(c!.conflicts, 0);
        } finally {
          await db.pool.end();
        }
      },
    );
  } finally {
    if (uri) {
      const db = await createPool({ uri, max: 1 });
      try {
        const q = qualify({ schema: "public", table });
        for (const name of [q.tickets, q.seats, q.freedSeats, q.transactions]) {
          await db.pool.query(`DROP TABLE IF EXISTS ${name}`);
        }
        await db.pool.query(`DELETE FROM ${q.deadLetters} WHERE target_table = $1`, [table]);
        await db.pool.query(`DELETE FROM ${q.conflicts} WHERE target_table = $1`, [table]);
        await db.pool.query(`DELETE FROM ${q.offsets} WHERE group_id = $1`, [
          defaultGroupId("public", table),
        ]);
      } finally {
        await db.pool.end();
      }
    }
    await deleteTopics(await stackConnection(), [topic]).catch(() => {});
    await Deno.remove(dir, { recursive: true });
    if (!wasRunning) await stackCommand("down", "embedded"); // stop only what this test started
  }
});

// --- the embedded server's session discipline, checked over raw protocol messages

const encoder = new TextEncoder();

function message(type: string, ...parts: Uint8Array[]): Uint8Array {
  const length = parts.reduce((n, p) => n + p.length, 4);
  const out = new Uint8Array(length + 1);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, length);
  let at = 5;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}
const text = (s: string) => encoder.encode(`${s}\0`);
const int16 = (n: number) => new Uint8Array([n >> 8, n & 255]);
const int32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n);
  return b;
};

function startup(): Uint8Array {
  const body = [int32(196608), text("user"), text("postgres"), text("database"), text("postgres")];
  const length = body.reduce((n, p) => n + p.length, 4) + 1;
  const out = new Uint8Array(length);
  out.set(int32(length));
  let at = 4;
  for (const p of body) out.set(p, at), at += p.length;
  return out;
}

/** Reads until the server says ReadyForQuery; returns what came, as printable text. */
async function readUntilReady(conn: Deno.Conn): Promise<string> {
  const got: number[] = [];
  const buf = new Uint8Array(65536);
  const ready = () => {
    const n = got.length;
    return n >= 6 && got[n - 6] === 0x5a && got[n - 2] === 5 && "ITE".includes(
      String.fromCharCode(got[n - 1]!),
    );
  };
  while (!ready()) {
    const n = await conn.read(buf);
    if (n === null) break;
    got.push(...buf.subarray(0, n));
  }
  return String.fromCharCode(...got.map((c) => (c >= 32 && c < 127 ? c : 46)));
}

Deno.test("startEmbeddedPostgres() keeps each connection's exchange and transaction to itself", async (t) => {
  const server = await startEmbeddedPostgres({
    dataDir: "memory://",
    port: 0,
    idleSessionTimeoutMs: 1000,
    log: () => {},
  });
  const b = new pg.Client({ connectionString: server.uri });
  try {
    await b.connect();
    await t.step("a Parse ... Sync exchange is not entered by another connection", async () => {
      const a = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      try {
        await a.write(startup());
        await readUntilReady(a);
        await a.write(message("P", text(""), text("SELECT $1::int + 1000 AS a"), int16(0)));
        await new Promise((r) => setTimeout(r, 100));
        const fromB = b.query("SELECT $1::text || '-from-B' AS b", ["hello"]);
        await new Promise((r) => setTimeout(r, 200)); // pglite-socket 0.2.17 runs B's query here
        const value = encoder.encode("1");
        await a.write(
          message("B", text(""), text(""), int16(0), int16(1), int32(1), value, int16(0)),
        );
        await a.write(message("E", text(""), int32(0)));
        await a.write(message("S"));
        const answer = await readUntilReady(a);
        assert.match(answer, /1001/, `A's statement ran with A's value: ${JSON.stringify(answer)}`);
        assert.doesNotMatch(answer, /from-B/);
        assert.deepEqual((await fromB).rows, [{ b: "hello-from-B" }]);
      } finally {
        a.close();
      }
    });

    await t.step("COPY FROM STDIN is refused and the server keeps answering", async () => {
      await b.query("CREATE TABLE copy_target (x int)");
      await assert.rejects(
        b.query("COPY copy_target FROM STDIN"),
        /COPY FROM STDIN is not supported/,
      );
      assert.deepEqual((await b.query("SELECT count(*)::int AS n FROM copy_target")).rows, [{
        n: 0,
      }]);
    });

    await t.step("a transaction left idle while others wait is ended and rolled back", async () => {
      const holder = new pg.Client({ connectionString: server.uri });
      const lost = new Promise<Error>((resolve) => holder.on("error", resolve));
      await holder.connect();
      await holder.query("BEGIN");
      await holder.query("CREATE TABLE never_committed (x int)");
      const started = performance.now();
      const { rows } = await b.query("SELECT to_regclass('never_committed') AS t");
      assert.deepEqual(rows, [{ t: null }]);
      assert.ok(performance.now() - started >= 900, "B waited for the holder's timeout");
      assert.match((await lost).message, /idle-in-transaction timeout/);
      await holder.end().catch(() => {});
    });
  } finally {
    await b.end().catch(() => {});
    await server.stop();
  }
});
