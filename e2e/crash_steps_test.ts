/**
 * Crashes at every step of a batch's write. A trigger put on one of the pipeline's tables holds
 * one of the consumer's transactions in the server (it waits for a lock the test holds) right
 * after its statement on that table, or at its COMMIT; while it is held, the test
 *
 * - kills the consumer (SIGKILL). The server goes on without its client: it rolls the
 *   transaction back when it next needs the client (the rest of a COPY), or commits it when the
 *   rest of the batch, COMMIT included, had reached it (held at COMMIT, or after the last COPY),
 *   so the batch is stored and the consumer never knew. A new consumer drains.
 * - ends the server's session (`pg_terminate_backend`). The consumer retries and drains.
 * - at COMMIT only: keeps the server's replies from the consumer (a proxy between them) until the
 *   commit is done, then cuts its connections. The consumer cannot know whether its batch is
 *   stored: its retry must find out, not store it twice nor stop.
 *
 * Two streams: purchases only (every batch takes the COPY path) and the whole lifecycle with
 * bad data (cancellations: the careful path; dead letters; seats freed and sold again). Each case
 * has its own table and group on the stream's topic, and ends with `verify --manifest` passing,
 * every stored purchase holding exactly its seats and one payment, nothing orphaned, and the
 * stored offsets covering the topic; a run that lived through it counted every message once.
 */
import assert from "node:assert/strict";
import { consumerApplicationName, defaultGroupId } from "../lib/pipeline/consumer.ts";
import { setupDatabase } from "../lib/postgres/setup.ts";
import { createPool } from "../lib/postgres/postgres.ts";
import { type QualifiedNames, qualify } from "../lib/postgres/schema.ts";
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import {
  collect,
  consumerArgs,
  type ConsumerCounts,
  consumerCounts,
  deleteTopics,
  runScript,
  spawnScript,
  sql,
  stackConnection,
  stackInfo,
  storedGroupOffsets,
  uniqueSuffix,
  waitFor,
  waitForSessionsGone,
  writeStackCreds,
} from "../testing/testing.ts";
import { startTcpProxy } from "../testing/tcp_proxy.ts";
import { verifyPipeline } from "../lib/commands/verify.ts";

/** Where a batch is held: after its statement on a table, or in its COMMIT. */
interface Step {
  name: string;
  table: keyof QualifiedNames;
  /** The row (counted from the case's start) whose trigger holds its transaction. */
  row: number;
  /** Holds the transaction at COMMIT: a deferred trigger. */
  commit?: boolean;
}

type Fault = "kill" | "terminate" | "lost reply";

// 100 messages a batch: each row below is in a batch after the first few committed
const PURCHASE_STEPS: Step[] = [
  { name: "after its offset claim", table: "offsets", row: 4 },
  { name: "after its seats", table: "seats", row: 1_000 },
  { name: "after its tickets", table: "tickets", row: 300 },
  { name: "after its payments", table: "transactions", row: 300 },
  { name: "at its commit", table: "offsets", row: 4, commit: true },
];
const LIFECYCLE_STEPS: Step[] = [
  ...PURCHASE_STEPS,
  { name: "after its dead letters", table: "deadLetters", row: 8 },
  { name: "after its freed seats", table: "freedSeats", row: 60 },
];

/**
 * The trigger of a case: at the step's row (once) the transaction waits for advisory lock `key`,
 * which the test holds until it has done its harm: no timing to race. An offset row counts only
 * when its offset moves (the careful path's last statement updates its counts too).
 */
async function installHold(schema: string, table: string, step: Step, key: number) {
  const target = qualify({ schema, table })[step.table];
  const events = step.table === "offsets" ? "INSERT OR UPDATE OF next_offset" : "INSERT OR UPDATE";
  await sql(`CREATE SEQUENCE ${schema}.hold`);
  await sql(`CREATE FUNCTION ${schema}.hold() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval('${schema}.hold') = ${step.row} THEN PERFORM pg_advisory_xact_lock(${key}); END IF;
      RETURN NULL;
    END $$`);
  await sql(
    step.commit
      ? `CREATE CONSTRAINT TRIGGER hold AFTER ${events} ON ${target}
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${schema}.hold()`
      : `CREATE TRIGGER hold AFTER ${events} ON ${target}
          FOR EACH ROW EXECUTE FUNCTION ${schema}.hold()`,
  );
}

/** The server sessions of the case's consumer waiting in the hold. */
async function heldSessions(groupId: string): Promise<{ pid: number; state: string }[]> {
  return await sql<{ pid: number; state: string }>(
    `SELECT pid, state FROM pg_stat_activity
      WHERE application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
    [consumerApplicationName(groupId)],
  );
}

/** A session of the test holding advisory lock `key` until `release`. */
async function holdLock(key: number) {
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 1 });
  const client = await db.pool.connect();
  await client.query("SELECT pg_advisory_lock($1)", [key]);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await client.query("SELECT pg_advisory_unlock($1)", [key]).catch(() => {});
    client.release();
    await db.pool.end();
  };
}

/** Purchases holding other than exactly their seats, tickets without one payment, orphans. */
async function integrityProblems(schema: string, table: string): Promise<string[]> {
  const q = qualify({ schema, table });
  const rows = await sql<{ problem: string }>(
    `SELECT t.ticket_id || ' holds ' || (SELECT count(*) FROM ${q.seats} s
        WHERE s.ticket_id = t.ticket_id) || ' of its ' || cardinality(string_to_array(t.seats, ',')) || ' seats' AS problem
       FROM ${q.tickets} t WHERE t.status = 'purchased' AND cardinality(string_to_array(t.seats, ',')) <>
         (SELECT count(*) FROM ${q.seats} s WHERE s.ticket_id = t.ticket_id)
     UNION ALL
     SELECT t.ticket_id || ' has ' || count(p.ticket_id) || ' payments'
       FROM ${q.tickets} t LEFT JOIN ${q.transactions} p USING (ticket_id)
       GROUP BY t.ticket_id HAVING count(p.ticket_id) <> 1
     UNION ALL
     SELECT 'seat of unknown ticket ' || s.ticket_id FROM ${q.seats} s
       WHERE NOT EXISTS (SELECT FROM ${q.tickets} t WHERE t.ticket_id = s.ticket_id)
     UNION ALL
     SELECT 'payment of unknown ticket ' || p.ticket_id FROM ${q.transactions} p
       WHERE NOT EXISTS (SELECT FROM ${q.tickets} t WHERE t.ticket_id = p.ticket_id)
     LIMIT 10`,
  );
  return rows.map((r) => r.problem);
}

interface Stream {
  topic: string;
  manifest: string;
  creds: string;
}

/** One case: a fresh table and group on the stream, the fault at the step, the checks. */
async function crashCase(stream: Stream, step: Step, fault: Fault): Promise<void> {
  const label = `${fault} ${step.name}${step.commit ? "" : ` (${step.table})`}`;
  // a schema of its own: the offsets and dead-letter tables are the case's alone
  const schema = `crash_${uniqueSuffix()}`, table = "tickets";
  const groupId = defaultGroupId(schema, table);
  const connection = await stackConnection();
  await setupDatabase(connection, { schema, table });
  const proxy = fault === "lost reply"
    ? await startTcpProxy("127.0.0.1", Number(new URL(stackInfo().postgresUri).port))
    : undefined;
  const key = Math.floor(Math.random() * 2 ** 31);
  const release = await holdLock(key);
  let child: Deno.ChildProcess | undefined;
  let first: ReturnType<typeof collect> | undefined;
  let exited = false;
  try {
    await installHold(schema, table, step, key);
    const target = { creds: stream.creds, topic: stream.topic, table };
    const extra = ["--schema", schema, "--batch-size", "100", "--idle-timeout", "4"];
    if (proxy) {
      const uri = new URL(stackInfo().postgresUri);
      uri.port = String(proxy.port);
      extra.push("--postgres-uri", uri.toString());
    }
    child = spawnScript("consumer.ts", consumerArgs(target, ...extra));
    first = collect(child);
    first.done.finally(() => exited = true);
    const output = first;
    let held: { pid: number; state: string }[] = [];
    let live: ConsumerCounts | undefined;
    await waitFor(`${label}: a held transaction`, async () => {
      held = await heldSessions(groupId);
      return held.length > 0;
    }, 60_000).catch((error) => {
      throw new Error(`${error.message}\n${output.stderr()}`);
    });
    if (fault === "kill") {
      child.kill("SIGKILL");
      assert.equal((await first.done).signal, "SIGKILL", label);
      await release();
      // the server finishes the orphaned transaction (rollback, or the held commit) first
      await waitForSessionsGone(groupId);
      const second = await runScript("consumer.ts", consumerArgs(target, ...extra));
      assert.equal(second.code, 0, `${label}: ${second.stderr}`);
    } else {
      if (fault === "terminate") {
        await sql(`SELECT pg_terminate_backend($1)`, [held[0]!.pid]);
        await release();
      } else {
        proxy!.holdReplies();
        await release();
        // the commit finishes in the server; its reply waits in the proxy
        await waitFor(`${label}: the held commit done`, async () => {
          const [row] = await sql<{ state: string | null }>(
            `SELECT state FROM pg_stat_activity WHERE pid = $1`,
            [held[0]!.pid],
          );
          return row?.state === "idle";
        }, 30_000);
        proxy!.cut();
      }
      const status = await first.done;
      assert.equal(status.code, 0, `${label}: ${first.stderr()}`);
      assert.match(first.stderr(), /database write failed \(attempt 1\)/, label);
      if (fault === "lost reply") {
        // the retry found the commit its reply did not bring, by the write's id
        assert.match(first.stderr(), /committed by an earlier try whose reply was lost/, label);
      }
      live = consumerCounts(first.stdout());
    }
    const verify = await runScript("verify.ts", [
      ...["--creds", stream.creds, "--schema", schema, "--table-name", table],
      ...["--manifest", stream.manifest],
      ...["--examples", "5"],
    ]);
    assert.equal(verify.code, 0, `${label}: ${verify.stdout}${verify.stderr}`);
    assert.match(verify.stdout, /: 0 mismatches\nverify: OK/, label);
    assert.deepEqual(await integrityProblems(schema, table), [], label);
    const report = await verifyPipeline({ connection, topic: stream.topic, schema, table });
    const stored = await storedGroupOffsets(qualify({ schema, table }), groupId, stream.topic);
    const covered = [...stored.values()].reduce((n, next) => n + Number(next), 0);
    assert.equal(covered, report.messages, `${label}: stored offsets cover the topic`);
    if (live) {
      // one run did it all: it accounts for every message once, and no batch of it was fenced
      const [dead] = await sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${qualify({ schema, table }).deadLetters}`,
      );
      assert.deepEqual(
        {
          received: live.received,
          stored: live.stored,
          deadLetters: live.deadLetters,
          fenced: live.fenced,
        },
        { received: report.messages, stored: report.rows, deadLetters: dead!.n, fenced: 0 },
        `${label}: ${live.line}`,
      );
    }
  } finally {
    await release();
    // a case that failed half way leaves no consumer behind to hold locks on the schema
    if (first && !exited) child!.kill("SIGKILL");
    await first?.done;
    await proxy?.close();
    await sql(`DROP SCHEMA ${schema} CASCADE`);
  }
}

/** Runs `jobs` at most `width` at a time; rejects with every failure's message. */
async function inParallel(jobs: (() => Promise<void>)[], width: number): Promise<void> {
  const failures: string[] = [];
  let next = 0;
  const lane = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      await job().catch((error) => failures.push(String(error?.stack ?? error)));
    }
  };
  await Promise.all(Array.from({ length: width }, lane));
  if (failures.length > 0) throw new Error(failures.join("\n\n"));
}

/** Publishes a stream (with its manifest) and runs every step with every fault on it. */
async function crashSuite(name: string, producerFlags: string[], steps: Step[]): Promise<void> {
  const connection = await stackConnection();
  const creds = await writeStackCreds();
  const dir = await Deno.makeTempDir();
  const topic = `crash_${name}_${uniqueSuffix()}`;
  try {
    await ensureTopic(createKafka(connection.kafka), topic, 3);
    const manifest = `${dir}/manifest.jsonl`;
    const producer = await runScript("producer.ts", [
      ...["--creds", creds, "--topic-name", topic, "--num", "3000", "--seed", "41"],
      ...["--manifest", manifest, "--no-metrics-log", ...producerFlags],
    ]);
    assert.equal(producer.code, 0, producer.stderr);
    const stream = { topic, manifest, creds };
    const jobs = steps.flatMap((step) =>
      (["kill", "terminate", ...(step.commit ? ["lost reply" as const] : [])] as Fault[]).map(
        (fault) => () => crashCase(stream, step, fault),
      )
    );
    await inParallel(jobs, 3);
  } finally {
    await deleteTopics(connection, [topic]).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("crashes at every step of a COPY batch (purchases): killed, session ended, reply lost; verify --manifest passes", async () => {
  await crashSuite("copy", [], PURCHASE_STEPS);
});

Deno.test("crashes at every step of a careful batch (cancellations, bad data): killed, session ended, reply lost; verify --manifest passes", async () => {
  await crashSuite("careful", ["--cancel-rate", "0.2", "--poison-rate", "0.05"], LIFECYCLE_STEPS);
});
