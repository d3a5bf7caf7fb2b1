/**
 * The fault suite: outages, rebalances, frozen consumers, killed connections. Each case ends by
 * checking the exact final table against the topic (verify: none missing, extra or different, no
 * dead letter) and the consumers' summaries against the table: what they stored adds up to the
 * rows and none received a message twice (exactly once, not at-least-once with dedup).
 */
import assert from "node:assert/strict";
import type { Connection } from "../lib/config/config.ts";
import { consumerApplicationName, defaultGroupId } from "../lib/pipeline/consumer.ts";
import { setupDatabase } from "../lib/postgres/setup.ts";
import { runProducer } from "../lib/pipeline/producer.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import { qualify, quoteIdent, quoteLiteral, REFUNDED } from "../lib/postgres/schema.ts";
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import { createPool } from "../lib/postgres/postgres.ts";
import {
  AclOperationTypes,
  AclPermissionTypes,
  AclResourceTypes,
  ResourcePatternTypes,
} from "kafkajs";
import {
  collect,
  consumerArgs as consumerArgsOf,
  type ConsumerCounts,
  consumerCounts,
  deleteTopics,
  describeGroup,
  dropPipeline,
  runScript,
  type ScriptResult,
  spawnScript,
  sql,
  stack,
  stackConnection,
  stackInfo,
  storedGroupOffsets,
  uniqueSuffix,
  waitFor,
  writeStackCreds,
} from "../testing/testing.ts";
import { verifyPipeline } from "../lib/commands/verify.ts";

interface Case {
  connection: Connection;
  creds: string;
  topic: string;
  table: string;
  consumerArgs: (...extra: string[]) => string[];
}

async function withCase(name: string, fn: (c: Case) => Promise<void>): Promise<void> {
  const connection = await stackConnection();
  const creds = await writeStackCreds();
  const id = uniqueSuffix();
  const topic = `fault_${name}_${id}`;
  const table = `fault_${name}_${id}`;
  await setupDatabase(connection, { schema: "public", table });
  const consumerArgs = (...extra: string[]) => consumerArgsOf({ creds, topic, table }, ...extra);
  try {
    await fn({ connection, creds, topic, table, consumerArgs });
  } finally {
    // whatever happened, the stack is whole again for the next case
    await stack("up", "postgres");
    await stack("up", "kafka");
    await dropPipeline(table);
    await deleteTopics(connection, [topic]).catch(() => {});
  }
}

/** The producer as a process, publishing `num` tickets at `rate` a second to the case's topic. */
function pacedProducer(c: Case, num: number, rate: number) {
  return collect(
    spawnScript("producer.ts", [
      "--creds",
      c.creds,
      "--topic-name",
      c.topic,
      "--num",
      String(num),
      "--rate",
      String(rate),
      "--no-metrics-log",
    ]),
  );
}

/** Rows in the ticket table (ticket_id is its primary key: a duplicate row cannot exist). */
async function rowCount(table: string): Promise<number> {
  const [row] = await sql<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${qualify({ schema: "public", table }).tickets}`,
  );
  return row!.n;
}

/** Sum of the stored offsets of the case's group: how many messages it has committed. */
async function committedOffsets(c: Case): Promise<number> {
  const [row] = await sql<{ n: number }>(
    `SELECT coalesce(sum(next_offset), 0)::int AS n FROM ${
      qualify({ schema: "public", table: c.table }).offsets
    } WHERE group_id = $1 AND topic = $2`,
    [defaultGroupId("public", c.table), c.topic],
  );
  return row!.n;
}

/**
 * The table holds exactly the topic's tickets (verify passes, no dead letter), the stored offsets
 * cover every message, and the consumers' summaries account for every row: what they stored
 * adds up to the rows, and they received each message once (`duplicates` is 0 unless the topic
 * itself holds copies, which `topicCopies` allows).
 */
async function assertExact(
  c: Case,
  runs: ConsumerCounts[] | "replayed",
  expected?: number,
  topicCopies = false,
): Promise<void> {
  const report = await verifyPipeline({ connection: c.connection, topic: c.topic, table: c.table });
  const rows = await rowCount(c.table);
  assert.deepEqual(
    {
      missing: report.missing.length,
      extra: report.extra.length,
      mismatched: report.mismatched.length,
      deadLetters: report.deadLetters,
      ok: report.ok,
    },
    { missing: 0, extra: 0, mismatched: 0, deadLetters: 0, ok: true },
  );
  assert.equal(rows, report.tickets);
  if (expected !== undefined) assert.equal(rows, expected);
  if (!topicCopies) assert.equal(report.messages, report.tickets, "the topic holds copies");
  assert.equal(await committedOffsets(c), report.messages, "stored offsets cover the topic");
  if (runs === "replayed") return; // the database lost rows the consumers stored: they count twice
  const sum = (f: (r: ConsumerCounts) => number) => runs.reduce((n, r) => n + f(r), 0);
  assert.deepEqual(
    {
      received: sum((r) => r.received),
      stored: sum((r) => r.stored),
      duplicates: sum((r) => r.duplicates),
      conflicts: sum((r) => r.conflicts),
      deadLetters: sum((r) => r.deadLetters),
    },
    {
      received: report.messages,
      stored: rows,
      duplicates: report.messages - report.tickets,
      conflicts: 0,
      deadLetters: 0,
    },
    `consumer summaries: ${JSON.stringify(runs)}`,
  );
}

Deno.test("consumer rides out a PostgreSQL restart mid-stream: retries, resumes, exact table", async () => {
  await withCase("pgrestart", async (c) => {
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 60_000 });
    const consumer = collect(
      spawnScript("consumer.ts", c.consumerArgs("--batch-size", "1000", "--idle-timeout", "5")),
    );
    await waitFor("first rows", async () => (await rowCount(c.table)) >= 3_000);
    await stack("down", "postgres");
    await new Promise((r) => setTimeout(r, 3_000));
    await stack("up", "postgres");
    const status = await consumer.done;
    assert.equal(status.code, 0, consumer.stderr());
    assert.match(consumer.stderr(), /database write failed \(attempt 1\)/);
    // logged once per attempt, not per message
    assert.ok(consumer.stderr().split("\n").filter((l) => l.includes("attempt")).length < 40);
    // the batches rolled back by the outage were written again once, none twice
    await assertExact(c, [consumerCounts(consumer.stdout())], 60_000);
  });
});

Deno.test("consumer gives up after --db-retry seconds when PostgreSQL goes down mid-run: exit 1, what was committed is exact", async () => {
  await withCase("pgdown", async (c) => {
    const total = 20_000;
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: total });
    const consumerChild = spawnScript(
      "consumer.ts",
      c.consumerArgs("--batch-size", "500", "--db-retry", "3"),
    );
    const consumer = collect(consumerChild);
    await waitFor("first rows", async () => (await rowCount(c.table)) >= 2_000);
    await stack("down", "postgres");
    let status: Deno.CommandStatus;
    let startup: ScriptResult;
    try {
      // bounded: a consumer that never gave up must not keep the database down
      let timer: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = await Promise.race([
        consumer.done.finally(() => clearTimeout(timer)),
        new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), 20_000)),
      ]);
      if (!gaveUp) {
        consumerChild.kill("SIGKILL");
        throw new Error(`still running 20 s into the outage:\n${consumer.stderr()}`);
      }
      status = gaveUp;
      // while it is down, a consumer that starts fails at once with the start-up error
      startup = await runScript("consumer.ts", c.consumerArgs("--connect-timeout", "3"));
    } finally {
      await stack("up", "postgres");
    }
    assert.equal(status.code, 1, consumer.stderr());
    assert.match(consumer.stderr(), /^error: PostgreSQL still failing after 3 s: /m);
    assert.match(consumer.stderr(), /database .* failed \(attempt 1\)/);
    assert.doesNotMatch(consumer.stdout(), /^consumed /m, "a failed run prints no summary");
    assert.equal(startup.code, 1, startup.stderr);
    assert.match(
      startup.stderr,
      /^error: cannot reach PostgreSQL at 127\.0\.0\.1:\d+: connection refused/m,
    );
    // what it committed before giving up is whole: in each partition the rows are exactly the
    // offsets below the stored offset, nothing after it and nothing half written
    const q = qualify({ schema: "public", table: c.table });
    const partitions = await sql<{ partition: number; next: number; rows: number; last: number }>(
      `SELECT o.partition, o.next_offset::int AS next, count(t.ticket_id)::int AS rows,
         coalesce(max(t.kafka_offset), -1)::int AS last
       FROM ${q.offsets} o LEFT JOIN ${q.tickets} t
         ON t.kafka_topic = o.topic AND t.kafka_partition = o.partition
       WHERE o.group_id = $1 AND o.topic = $2 GROUP BY o.partition, o.next_offset`,
      [defaultGroupId("public", c.table), c.topic],
    );
    for (const p of partitions) {
      assert.deepEqual([p.rows, p.last], [p.next, p.next - 1], `partition ${p.partition}`);
    }
    const committed = await committedOffsets(c);
    assert.equal(await rowCount(c.table), committed);
    assert.ok(committed >= 2_000 && committed < total, `committed ${committed} of ${total}`);
    // once PostgreSQL is back, a new run stores the rest, exactly once
    const rerun = await runScript("consumer.ts", c.consumerArgs("--idle-timeout", "4"));
    assert.equal(rerun.code, 0, rerun.stderr);
    const rest = consumerCounts(rerun.stdout);
    assert.equal(rest.received, total - committed);
    // the run that gave up printed no summary: what it did is what it committed
    const gaveUp = { received: committed, stored: committed, duplicates: 0, conflicts: 0 };
    await assertExact(
      c,
      [rest, { ...gaveUp, deadLetters: 0, fenced: 0, lost: 0, line: "" }],
      total,
    );
  });
});

Deno.test("connections killed by pg_terminate_backend are replaced; exact table", async () => {
  await withCase("terminate", async (c) => {
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 60_000 });
    const consumer = collect(
      spawnScript("consumer.ts", c.consumerArgs("--batch-size", "500", "--idle-timeout", "5")),
    );
    let killed = 0;
    for (let round = 0; round < 4; round++) {
      await waitFor("rows", async () => (await rowCount(c.table)) >= 5_000 * (round + 1), 60_000)
        .catch(() => {});
      const rows = await sql<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
         WHERE application_name = $1 AND pid <> pg_backend_pid()`,
        [consumerApplicationName(defaultGroupId("public", c.table))],
      );
      killed += rows[0]!.n;
    }
    const status = await consumer.done;
    assert.equal(status.code, 0, consumer.stderr());
    assert.ok(killed > 0, "no connection was terminated");
    await assertExact(c, [consumerCounts(consumer.stdout())], 60_000);
  });
});

Deno.test("broker restarted mid-stream: producer retries and reports, consumer resumes; exact table", async () => {
  await withCase("kafkarestart", async (c) => {
    const producer = pacedProducer(c, 40_000, 5_000);
    await new Promise((r) => setTimeout(r, 3_000)); // the producer creates the topic
    const consumer = collect(spawnScript("consumer.ts", c.consumerArgs("--idle-timeout", "15")));
    await waitFor("first rows", async () => (await rowCount(c.table)) >= 5_000);
    await stack("down", "kafka");
    await new Promise((r) => setTimeout(r, 12_000));
    await stack("up", "kafka");
    const pStatus = await producer.done;
    const summary = /sent (\d+) tickets/.exec(producer.stdout() + producer.stderr());
    assert.ok(summary, producer.stderr());
    if (pStatus.code !== 0) {
      // never a silent loss: a non-zero exit names what was not sent
      assert.match(producer.stderr(), /tickets were not sent/);
    } else assert.equal(Number(summary[1]), 40_000);
    const cStatus = await consumer.done;
    assert.equal(cStatus.code, 0, consumer.stderr());
    // a send the producer retried may be in the topic twice: the copy is a duplicate, once
    await assertExact(c, [consumerCounts(consumer.stdout())], undefined, true);
    assert.ok((await rowCount(c.table)) >= Number(summary[1]));
  });
});

/**
 * What a database crash with synchronous_commit off, or a failover to a standby that was behind,
 * leaves: the last commits of partitions 0 and 1 gone, whole. Partition 0 loses every commit
 * (its stored offset too), partition 1 those past half its stored offset. The offsets rows are
 * locked first, so no batch commits in between and the state left is one the group had.
 */
async function loseLastCommits(c: Case): Promise<void> {
  await sql(lastCommitsLost(c));
}

/** The statement of {@linkcode loseLastCommits}. */
function lastCommitsLost(c: Case): string {
  const q = qualify({ schema: "public", table: c.table });
  const group = quoteLiteral(defaultGroupId("public", c.table)), topic = quoteLiteral(c.topic);
  const mine = `group_id = ${group} AND topic = ${topic}`;
  const lost = `SELECT ticket_id FROM ${q.tickets} WHERE kafka_topic = ${topic}
    AND kafka_partition = r.partition AND kafka_offset >= cut`;
  return `DO $$
    DECLARE r record; cut bigint;
    BEGIN
      PERFORM FROM ${q.offsets} WHERE ${mine} FOR UPDATE;
      FOR r IN SELECT partition, next_offset FROM ${q.offsets}
        WHERE ${mine} AND partition IN (0, 1) LOOP
        cut := CASE r.partition WHEN 0 THEN 0 ELSE r.next_offset / 2 END;
        DELETE FROM ${q.seats} WHERE ticket_id IN (${lost});
        DELETE FROM ${q.transactions} WHERE ticket_id IN (${lost});
        DELETE FROM ${q.tickets} WHERE ticket_id IN (${lost});
        IF cut = 0 THEN
          DELETE FROM ${q.offsets} WHERE ${mine} AND partition = r.partition;
        ELSE
          UPDATE ${q.offsets} SET next_offset = cut WHERE ${mine} AND partition = r.partition;
        END IF;
      END LOOP;
    END $$`;
}

// Aiven's standbys replicate asynchronously: a failover can lose the last commits the consumer
// saw succeed. The next claim must find the offset moved and read those messages again; were a
// claim to create the offset row afresh, partition 0 would skip every message it lost.
Deno.test("the database loses its last commits (failover, crash): the consumer reads them again; exact table", async () => {
  await withCase("losttail", async (c) => {
    const producer = pacedProducer(c, 30_000, 3_000);
    await new Promise((r) => setTimeout(r, 2_000)); // the producer creates the topic
    const consumer = collect(
      spawnScript("consumer.ts", c.consumerArgs("--batch-size", "200", "--idle-timeout", "5")),
    );
    await waitFor("offsets of partitions 0 and 1 past 1,000", async () => {
      const [row] = await sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${qualify({ schema: "public", table: c.table }).offsets}
         WHERE group_id = $1 AND topic = $2 AND partition IN (0, 1) AND next_offset >= 1000`,
        [defaultGroupId("public", c.table), c.topic],
      );
      return row!.n === 2;
    });
    await loseLastCommits(c);
    assert.equal((await producer.done).code, 0, producer.stderr());
    const status = await consumer.done;
    assert.equal(status.code, 0, consumer.stderr());
    await assertExact(c, "replayed", 30_000);
    assert.match(consumer.stderr(), /partition 0: the stored offset is not where this member/);
    assert.match(consumer.stderr(), /partition 1: the stored offset is not where this member/);
  });
});

/**
 * {@linkcode loseLastCommits}, and the case's seats table held in SHARE mode from the moment the
 * loss commits (reads go on, writes wait) until the returned release: what the consumer reads
 * again cannot be stored meanwhile. The lock is queued behind the loss's transaction, so no write
 * of the consumer's comes between.
 */
async function loseLastCommitsHoldingWrites(c: Case): Promise<() => Promise<void>> {
  const info = stackInfo();
  const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 2 });
  const loss = await db.pool.connect(), hold = await db.pool.connect();
  const seats = qualify({ schema: "public", table: c.table }).seats;
  await loss.query("BEGIN");
  await loss.query(lastCommitsLost(c));
  const [{ pid }] = (await hold.query("SELECT pg_backend_pid() AS pid")).rows;
  const held = hold.query(`BEGIN; LOCK TABLE ${seats} IN SHARE MODE`);
  await waitFor("the SHARE lock queued behind the loss", async () => {
    const { rows } = await loss.query(
      "SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted",
      [pid],
    );
    return rows[0].n > 0;
  }, 10_000);
  await loss.query("COMMIT");
  loss.release();
  await held;
  return async () => {
    await hold.query("ROLLBACK");
    hold.release();
    await db.pool.end();
  };
}

/** Kafka's committed offsets of the case's group by partition, as KafkaJS's admin reads them. */
async function kafkaOffsets(c: Case): Promise<Map<number, bigint>> {
  const admin = createKafka(c.connection.kafka).admin();
  await admin.connect();
  try {
    const [topic] = await admin.fetchOffsets({
      groupId: defaultGroupId("public", c.table),
      topics: [c.topic],
    });
    return new Map(topic!.partitions.map((p) => [p.partition, BigInt(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

// ... and on a partition where nothing new comes, no claim finds out: the member's own check does.
// Kafka's group offsets (for lag tools) follow the stored offsets back, before the re-read stores
// anything (its writes held meanwhile).
Deno.test("the database loses its last commits on a quiet topic: the consumer's check reads them again; exact table", async () => {
  await withCase("losttailquiet", async (c) => {
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 6_000 });
    const consumer = collect(spawnScript("consumer.ts", c.consumerArgs("--idle-timeout", "5")));
    await waitFor("every message stored", async () => (await committedOffsets(c)) === 6_000);
    const groupId = defaultGroupId("public", c.table);
    // drained: the consumer leaves 5 s after, so this must not take long (no JVM tool here)
    await waitFor("Kafka's group offsets at the topic's end", async () => {
      const offsets = await kafkaOffsets(c);
      return [...offsets.values()].reduce((a, b) => a + b, 0n) === 6_000n;
    });
    const release = await loseLastCommitsHoldingWrites(c);
    try {
      const stored = await storedGroupOffsets(
        qualify({ schema: "public", table: c.table }),
        groupId,
        c.topic,
      );
      assert.ok(stored.get(0) === undefined && (stored.get(1) ?? 0n) > 0n, `${[...stored]}`);
      await waitFor(
        "Kafka's group offsets of partitions 0 and 1 back at the stored ones",
        async () => {
          const rows = await describeGroup(groupId, c.topic);
          return [0, 1].every((p) =>
            rows.find((r) => r.partition === p)?.current === (stored.get(p) ?? 0n)
          );
        },
        30_000,
      );
    } finally {
      await release();
    }
    const status = await consumer.done;
    assert.equal(status.code, 0, consumer.stderr());
    await assertExact(c, "replayed", 6_000);
    assert.match(consumer.stderr(), /partition 0: the stored offset is not where this member/);
    const rows = await describeGroup(groupId, c.topic);
    assert.deepEqual(rows.map((r) => r.current), rows.map((r) => r.logEnd), "Kafka's at the end");
  });
});

/**
 * Everything the case's group has in the database, copied aside with the group's offset rows
 * locked (so no batch of the group commits meanwhile: each claims its offset first); `restore`
 * puts exactly that back in one transaction, behind the same lock, and drops the copy. Between
 * the two the consumer goes on: purchases, cancellations (rows updated, seats freed, payments
 * refunded) and dead letters. The restore is what a failover to a standby that stopped at the
 * copy leaves, all of that included. `counts` reads the copy's or the live tables' lifecycle
 * counts; `discard` drops the copy if it is still there.
 */
async function stateRestorer(c: Case) {
  const q = qualify({ schema: "public", table: c.table });
  const group = quoteLiteral(defaultGroupId("public", c.table)), topic = quoteLiteral(c.topic);
  const parts: [table: string, where: string][] = [
    [q.tickets, "true"],
    [q.seats, "true"],
    [q.freedSeats, "true"],
    [q.transactions, "true"],
    [q.offsets, `group_id = ${group} AND topic = ${topic}`],
    [q.deadLetters, `group_id = ${group} AND topic = ${topic}`],
    [q.conflicts, `target_table = ${quoteLiteral(c.table)} AND topic = ${topic}`],
  ];
  const copy = (i: number) => `public.${quoteIdent(`snap_${i}_${c.table}`)}`;
  const lock =
    `PERFORM FROM ${q.offsets} WHERE group_id = ${group} AND topic = ${topic} FOR UPDATE`;
  await sql(`DO $$ BEGIN ${lock};
    ${
    parts.map(([t, w], i) => `CREATE TABLE ${copy(i)} AS SELECT * FROM ${t} WHERE ${w};`).join("\n")
  }
  END $$`);
  const from = (i: number, of: "copy" | "live") => of === "copy" ? copy(i) : parts[i]![0];
  return {
    /** Cancelled tickets, refunded payments and dead letters, in the copy or the live tables. */
    counts: async (of: "copy" | "live") =>
      (await sql<{ cancelled: number; refunded: number; deadLetters: number }>(
        `SELECT (SELECT count(*)::int FROM ${from(0, of)} WHERE status = 'cancelled') AS cancelled,
          (SELECT count(*)::int FROM ${from(3, of)} WHERE status = ${
          quoteLiteral(REFUNDED)
        }) AS refunded,
          (SELECT count(*)::int FROM ${from(5, of)} WHERE ${parts[5]![1]}) AS "deadLetters"`,
      ))[0]!,
    restore: async () => {
      await sql(`DO $$ BEGIN ${lock};
        ${
        parts.map(([t, w], i) =>
          `DELETE FROM ${t} WHERE ${w}; INSERT INTO ${t} SELECT * FROM ${copy(i)}; DROP TABLE ${
            copy(i)
          };`
        ).join("\n")
      }
      END $$`);
    },
    discard: async () => {
      await sql(parts.map((_, i) => `DROP TABLE IF EXISTS ${copy(i)}`).join("; "));
    },
  };
}

// The same with the whole lifecycle in flight: the lost commits held cancellations (rows
// updated, seats freed, payments refunded), seats sold again after them, and dead letters. The
// re-read must apply each once more, exactly as the manifest says.
Deno.test("the database loses its last commits with cancellations, refunds and dead letters among them: verify --manifest passes", async () => {
  await withCase("lostlifecycle", async (c) => {
    const dir = await Deno.makeTempDir();
    try {
      const manifest = `${dir}/manifest.jsonl`;
      await ensureTopic(createKafka(c.connection.kafka), c.topic, 3);
      const producer = collect(
        spawnScript("producer.ts", [
          ...["--creds", c.creds, "--topic-name", c.topic, "--num", "20000", "--rate", "2500"],
          ...["--cancel-rate", "0.2", "--poison-rate", "0.05", "--seed", "31"],
          ...["--manifest", manifest, "--no-metrics-log"],
        ]),
      );
      const consumer = collect(
        spawnScript("consumer.ts", c.consumerArgs("--batch-size", "200", "--idle-timeout", "5")),
      );
      const offsetsPast = (n: number) => async () => {
        const stored = await storedGroupOffsets(
          qualify({ schema: "public", table: c.table }),
          defaultGroupId("public", c.table),
          c.topic,
        );
        return stored.size === 3 && [...stored.values()].every((next) => next >= BigInt(n));
      };
      await waitFor("every partition's offset past 1,000", offsetsPast(1_000));
      const state = await stateRestorer(c);
      let lost;
      try {
        await waitFor("every partition's offset past 3,000", offsetsPast(3_000));
        lost = { copy: await state.counts("copy"), live: await state.counts("live") };
        await state.restore();
      } finally {
        await state.discard();
      }
      assert.equal((await producer.done).code, 0, producer.stderr());
      const status = await consumer.done;
      assert.equal(status.code, 0, consumer.stderr());
      assert.match(consumer.stderr(), /the stored offset is not where this member/);
      // the copy held some of each, and the commits lost held more of each
      for (const k of ["cancelled", "refunded", "deadLetters"] as const) {
        assert.ok(0 < lost.copy[k] && lost.copy[k] < lost.live[k], `${k}: ${JSON.stringify(lost)}`);
      }
      const verify = await runScript("verify.ts", [
        ...["--creds", c.creds, "--table-name", c.table, "--manifest", manifest, "--examples", "5"],
      ]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.match(verify.stdout, /: 0 mismatches\nverify: OK/);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  });
});

/** Denies every principal the use of consumer group `groupId` (an ACL), until the returned undo. */
async function denyGroup(connection: Connection, groupId: string): Promise<() => Promise<void>> {
  const admin = createKafka(connection.kafka).admin();
  await admin.connect();
  const acl = {
    resourceType: AclResourceTypes.GROUP,
    resourceName: groupId,
    resourcePatternType: ResourcePatternTypes.LITERAL,
    principal: "User:*",
    host: "*",
    operation: AclOperationTypes.ALL,
    permissionType: AclPermissionTypes.DENY,
  };
  try {
    await admin.createAcls({ acl: [acl] });
  } finally {
    await admin.disconnect();
  }
  return async () => {
    const admin = createKafka(connection.kafka).admin();
    await admin.connect();
    try {
      await admin.deleteAcls({ filters: [acl] });
    } finally {
      await admin.disconnect();
    }
  };
}

// KafkaJS finds no coordinator when no broker answers for the group (all restarting; here an
// ACL makes every broker refuse) and its consumer then crashes for good; ours joins again
Deno.test("a group no broker answers for: the consumer keeps joining, and stores all once a broker does", async () => {
  await withCase("nocoordinator", async (c) => {
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 3_000 });
    const allow = await denyGroup(c.connection, defaultGroupId("public", c.table));
    let consumer;
    try {
      consumer = collect(spawnScript("consumer.ts", c.consumerArgs("--idle-timeout", "3")));
      let exited = false;
      consumer.done.then(() => exited = true);
      await waitFor("two attempts to join", () => {
        assert.ok(!exited, `the consumer ended: ${consumer!.stderr()}`);
        return Promise.resolve(consumer!.stderr().split("joining again").length > 2);
      });
      assert.equal(await rowCount(c.table), 0);
    } finally {
      await allow();
    }
    const status = await consumer.done;
    assert.equal(status.code, 0, consumer.stderr());
    assert.match(consumer.stderr(), /no broker answers as the group's coordinator/);
    await assertExact(c, [consumerCounts(consumer.stdout())], 3_000);
  });
});

Deno.test("three consumers in one group, started and stopped while data flows: exact table", async () => {
  await withCase("rebalance", async (c) => {
    const producer = pacedProducer(c, 60_000, 8_000);
    await waitFor("topic", async () => {
      const admin = (await import("../lib/kafka/kafka.ts")).createKafka(c.connection.kafka).admin();
      await admin.connect();
      try {
        return (await admin.listTopics()).includes(c.topic);
      } finally {
        await admin.disconnect();
      }
    });
    const args = c.consumerArgs(
      "--idle-timeout",
      "6",
      "--session-timeout",
      "10",
      "--batch-size",
      "500",
    );
    const a = collect(spawnScript("consumer.ts", args));
    await new Promise((r) => setTimeout(r, 1_500));
    const b = collect(spawnScript("consumer.ts", args));
    await new Promise((r) => setTimeout(r, 1_500));
    const third = spawnScript("consumer.ts", args);
    const d = collect(third);
    await new Promise((r) => setTimeout(r, 4_000)); // joined the group and got partitions
    third.kill("SIGTERM");
    assert.equal((await d.done).code, 0, d.stderr());
    const e = collect(spawnScript("consumer.ts", args));
    assert.equal((await producer.done).code, 0, producer.stderr());
    for (const x of [a, b, e]) assert.equal((await x.done).code, 0, x.stderr());
    // partitions moved between members: whatever a member had queued for a partition it lost
    // was fenced, so the members together received each message once
    await assertExact(c, [a, b, d, e].map((x) => consumerCounts(x.stdout())), 60_000);
  });
});

Deno.test("a consumer frozen (SIGSTOP) past its session timeout is fenced when it resumes: it stores only what is new", async () => {
  await withCase("frozen", async (c) => {
    const seed = 977;
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, num: 40_000, seed });
    const args = c.consumerArgs(
      "--session-timeout",
      "6",
      "--batch-size",
      "200",
      "--fetch-max-bytes",
      "65536",
    );
    const frozenChild = spawnScript("consumer.ts", args);
    const frozen = collect(frozenChild);
    await waitFor("first rows", async () => (await rowCount(c.table)) >= 2_000);
    frozenChild.kill("SIGSTOP");
    const other = collect(spawnScript("consumer.ts", [...args, "--idle-timeout", "4"]));
    assert.equal((await other.done).code, 0, other.stderr());
    assert.equal(await rowCount(c.table), 40_000);
    // More tickets arrive while it is still frozen. When it resumes, it still holds the chunks it
    // had read and queued before the freeze, for offsets the other consumer has stored since: a
    // consumer that ignored the stored offsets would write them again (duplicates) and move the
    // offsets back. This one must find them fenced, rejoin, and store just the new tickets.
    // (the same generator's next tickets: a new one could sell a seat again, as SEAT_TAKEN)
    const generator = new TicketGenerator({ seed });
    for (let i = 0; i < 40_000; i++) generator.next();
    const later = Array.from({ length: 3_000 }, () => generator.next());
    const queue = later.map((t) => ({ key: t.ticket_id, value: JSON.stringify(t) }));
    await runProducer({ kafka: c.connection.kafka, topic: c.topic, source: () => queue.shift() });
    const [before] = await sql<{ t: Date }>(`SELECT now() AS t`);
    frozenChild.kill("SIGCONT");
    await waitFor("the new tickets", async () => (await committedOffsets(c)) >= 43_000).catch(
      (error) => {
        frozenChild.kill("SIGKILL");
        throw new Error(`${error.message}; the resumed consumer said:\n${frozen.stderr()}`);
      },
    );
    frozenChild.kill("SIGTERM");
    assert.equal((await frozen.done).code, 0, frozen.stderr());
    const resumed = consumerCounts(frozen.stdout());
    const drained = consumerCounts(other.stdout());
    // its queued writes were refused (fenced), not stored and not counted as consumed
    assert.ok(resumed.fenced >= 1, `no fenced batch reported:\n${frozen.stderr()}`);
    assert.equal(resumed.duplicates, 0, "the resumed consumer wrote stored tickets again");
    assert.equal(resumed.stored, 43_000 - drained.stored);
    const q = qualify({ schema: "public", table: c.table });
    const late = await sql<{ ticket_id: string }>(
      `SELECT ticket_id FROM ${q.tickets} WHERE stored_at >= $1`,
      [before!.t],
    );
    assert.deepEqual(
      late.map((r) => r.ticket_id).sort(),
      later.map((t) => t.ticket_id).sort(),
      "rows stored after resume",
    );
    await assertExact(c, [resumed, drained], 43_000);
  });
});
