import assert from "node:assert/strict";
import { createKafka } from "../kafka/kafka.ts";
import { createPool } from "../postgres/postgres.ts";
import { FreedSeatsPruner } from "./prune.ts";
import { sinkStatements, writeBatch } from "./sink.ts";
import { batchOf, cancelOf, type Msg, showTickets } from "../../testing/sink_batches.ts";
import { stackInfo, withPipeline } from "../../testing/testing.ts";

Deno.test("FreedSeatsPruner deletes a cancellation's freed seats only once the log's start and every stored offset of its partition are past it, a capped number a pass", async () => {
  await withPipeline("prune", async (c) => {
    const kafka = createKafka(c.connection.kafka, { clientId: "tickets-prune-test" });
    const admin = kafka.admin();
    const producer = kafka.producer();
    const info = stackInfo();
    const db = await createPool({ uri: info.postgresUri, certPath: info.certPath, max: 2 });
    await Promise.all([admin.connect(), producer.connect()]);
    try {
      await admin.createTopics({
        topics: [{ topic: c.topic, numPartitions: 1 }],
        waitForLeaders: true,
      });
      // the log: ten messages (their content does not matter here), as the rows below say
      await producer.send({
        topic: c.topic,
        messages: Array.from({ length: 10 }, (_, i) => ({ value: `m${i}` })),
      });
      const t = showTickets(21, [["A1", "A2"], ["B1"], ["C1"], ["D1"], ["E1"], ["F1"], ["G1"], [
        "H1",
      ]]);
      // t0's cancellation at offset 3 frees two seats, t2's at 5 one, t1's at 7 one
      const msgs: Msg[] = [
        t[0]!,
        t[1]!,
        t[2]!,
        cancelOf(t[0]!.ticket_id, 1),
        t[3]!,
        cancelOf(t[2]!.ticket_id, 3),
        t[5]!,
        cancelOf(t[1]!.ticket_id, 2),
        t[6]!,
        t[7]!,
      ];
      const client = await db.pool.connect();
      try {
        const written = await writeBatch(client, sinkStatements(c.q), {
          ...batchOf(c.table, "g", 0n, msgs),
          topic: c.topic,
        });
        assert.equal(written.committed, true);
      } finally {
        client.release();
      }
      const freed = async () =>
        (await db.pool.query(`SELECT ticket_id FROM ${c.q.freedSeats} ORDER BY seat`)).rows
          .map((r) => r.ticket_id);
      assert.deepEqual(
        await freed(),
        [t[0]!.ticket_id, t[0]!.ticket_id, t[1]!.ticket_id, t[2]!.ticket_id],
      );
      await admin.fetchTopicMetadata({ topics: [c.topic] }); // the admin learns the leader
      const deleteBelow = (offset: number) =>
        admin.deleteTopicRecords({
          topic: c.topic,
          partitions: [{ partition: 0, offset: String(offset) }],
        });
      await deleteBelow(6);
      // a group of another table stored offset 2 of this partition: it may still replay 2-5
      await db.pool.query(
        `INSERT INTO ${c.q.offsets} (group_id, topic, partition, next_offset) VALUES ($1, $2, 0, 2)`,
        [`lagging_${c.table}`, c.topic],
      );
      // one cancellation a pass, to see a pass stop at its cap and the next go on from there
      const pruner = new FreedSeatsPruner({
        db,
        q: c.q,
        admin,
        topic: c.topic,
        groupId: "g",
        table: c.table,
      }, 1);
      assert.deepEqual(await pruner.prune(), { pruned: 0, more: false });
      assert.equal((await freed()).length, 4);
      await db.pool.query(`DELETE FROM ${c.q.offsets} WHERE group_id = $1`, [`lagging_${c.table}`]);
      // the log starts at 6 and group g is at 10: the cancellations at 3 and 5 are out of every
      // replay's reach (one a pass), the one at 7 is not
      assert.deepEqual(await pruner.prune(), { pruned: 2, more: true });
      assert.deepEqual(await pruner.prune(), { pruned: 1, more: true });
      assert.deepEqual(await pruner.prune(), { pruned: 0, more: false });
      assert.deepEqual(await freed(), [t[1]!.ticket_id]);
      await deleteBelow(10);
      assert.deepEqual(await pruner.prune(), { pruned: 1, more: true });
      assert.deepEqual(await pruner.prune(), { pruned: 0, more: false });
      assert.deepEqual(await freed(), []);
      // the rest of what the cancellations did stays: tickets cancelled, seats free, refunds
      const { rows } = await db.pool.query(
        `SELECT count(*) FILTER (WHERE status = 'cancelled')::int AS cancelled FROM ${c.q.tickets}`,
      );
      assert.equal(rows[0].cancelled, 3);
    } finally {
      await Promise.all([admin.disconnect(), producer.disconnect()]);
      await db.pool.end();
    }
  });
});
