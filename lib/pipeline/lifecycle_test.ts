import assert from "node:assert/strict";
import type { KafkaMessage, RecordMetadata } from "kafkajs";
import { Buffer } from "node:buffer";
import { TicketGenerator } from "../model/generator.ts";
import { CONSUMER_DEFAULTS } from "./consumer.ts";
import { Lifecycle, type PlannedMessage } from "./lifecycle.ts";
import { type ManifestEntry, readManifest } from "./manifest.ts";
import { toRowsAndLetters } from "./transform.ts";
import { poisonKindNames } from "../model/poison.ts";

interface Logged {
  message: PlannedMessage;
  offset: number;
}

/**
 * Plans a run with `Lifecycle` and plays the broker: each request is acknowledged only when the
 * planner waits, newest first (so later requests land before earlier ones, as a retried request
 * can), and offsets are given in the order requests land. Returns the log per partition and the
 * manifest's entries. Since requests land newest first, a message planned before what it must
 * follow had landed would land before it, and the log shows it.
 */
async function simulate(seed: number, manifest: string) {
  const gen = new TicketGenerator({ seed });
  const lifecycle = new Lifecycle(
    { topic: "t", seed, cancelRate: 0.4, poisonRate: 0.3, manifest },
    () => gen.next(),
    { batchSize: 20, inFlight: 3 },
  );
  await lifecycle.start(3);
  const log: Logged[][] = [[], [], []];
  const unacked: { messages: PlannedMessage[]; ack: (m: RecordMetadata[]) => void }[] = [];
  const land = () => {
    const request = unacked.pop()!; // newest first
    const acks: RecordMetadata[] = [];
    for (const [p, entries] of log.entries()) {
      const mine = request.messages.filter((m) => m.partition === p);
      if (mine.length === 0) continue;
      acks.push({ topicName: "t", partition: p, errorCode: 0, baseOffset: String(entries.length) });
      for (const m of mine) {
        entries.push({ message: m, offset: entries.length });
      }
    }
    request.ack(acks);
  };
  let queued = 0;
  const total = 600;
  while (queued < total || lifecycle.owes()) {
    const planning = lifecycle.next(Math.min(20, total - queued));
    let round;
    while (!round) {
      round = await Promise.race([
        planning,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 0)),
      ]);
      if (!round) land();
    }
    if (round.messages.length === 0) break;
    queued += round.slots;
    const { promise, resolve } = Promise.withResolvers<RecordMetadata[]>();
    unacked.push({ messages: round.messages, ack: resolve });
    lifecycle.sent(promise);
  }
  while (unacked.length) land();
  await new Promise((r) => setTimeout(r, 0));
  lifecycle.close();
  const entries: ManifestEntry[] = [];
  for await (const chunk of readManifest(manifest)) entries.push(...chunk);
  return { log, entries, counts: lifecycle.counts };
}

Deno.test("acknowledged out of order, every cancel still lands after its purchase, every clash after its seat's sale, every double cancel after the first", async () => {
  const dir = await Deno.makeTempDir();
  const { log, entries, counts } = await simulate(21, `${dir}/m.jsonl`);
  assert.ok(counts.cancel! > 50, JSON.stringify(counts));
  for (const kind of ["seat-clash", "double-cancel", "unknown-cancel"]) {
    assert.ok(counts[kind]! > 0, kind);
  }
  const byPosition = new Map(entries.map((e) => [`${e.partition}@${e.offset}`, e]));
  assert.equal(byPosition.size, log.flat().length);
  let checked = 0;
  for (const [p, partition] of log.entries()) {
    const purchases = new Map<string, number>(); // ticket_id -> offset
    const seats = new Map<string, number>(); // show and seat -> offset of the sale
    const cancels = new Map<string, number>();
    for (const { message, offset } of partition) {
      const entry = byPosition.get(`${p}@${offset}`)!;
      assert.equal(entry.key, message.key);
      const sale = entry.kind === "purchase" || entry.kind === "seat-clash";
      const value = sale ? JSON.parse(String(message.value)) : {};
      const show = `${value.theater}|${value.movie}|${value.showtime}|${value.seats?.[0]}`;
      if (entry.kind === "purchase") {
        purchases.set(message.key!, offset);
        if (entry.expect === "stored") seats.set(show, offset);
      } else if (entry.kind === "cancel") {
        assert.ok(purchases.get(message.key!)! < offset, `cancel ${message.key} before purchase`);
        cancels.set(message.key!, offset);
        checked++;
      } else if (entry.kind === "double-cancel") {
        assert.ok(cancels.get(message.key!)! < offset, `double cancel ${message.key} too early`);
        checked++;
      } else if (entry.kind === "seat-clash") {
        assert.ok(seats.get(show)! < offset, `seat clash ${message.key} before the sale`);
        checked++;
      }
    }
  }
  assert.ok(checked > 100);
});

Deno.test("same seed, same rounds and the same manifest, whatever order the acknowledgements come in", async () => {
  const dir = await Deno.makeTempDir();
  const a = await simulate(33, `${dir}/a.jsonl`);
  const b = await simulate(33, `${dir}/b.jsonl`);
  assert.deepEqual(a.entries, b.entries);
  const c = await simulate(34, `${dir}/c.jsonl`);
  assert.notDeepEqual(a.entries, c.entries);
});

Deno.test("every planned message gets the reason the consumer gives it", async () => {
  const dir = await Deno.makeTempDir();
  const { log, entries } = await simulate(45, `${dir}/m.jsonl`);
  const byPosition = new Map(entries.map((e) => [`${e.partition}@${e.offset}`, e]));
  const kinds = new Set<string>();
  for (const [p, partition] of log.entries()) {
    const messages = partition.map(({ message, offset }) =>
      ({
        key: message.key === null ? null : Buffer.from(message.key),
        value: message.value === null ? null : Buffer.from(message.value),
        offset: String(offset),
        timestamp: "0",
        attributes: 0,
        size: 0,
        headers: {},
      }) as unknown as KafkaMessage
    );
    const { deadLetters } = toRowsAndLetters(messages, CONSUMER_DEFAULTS.maxMessageBytes);
    const reasons = new Map(deadLetters.map((d) => [d.offset, d.reason]));
    for (const { offset } of partition) {
      const e = byPosition.get(`${p}@${offset}`)!;
      kinds.add(e.kind);
      // SEAT_TAKEN and UNKNOWN_TICKET are the sink's: the message itself parses
      const parseReason = e.reason === "SEAT_TAKEN" || e.reason === "UNKNOWN_TICKET"
        ? undefined
        : e.reason;
      assert.equal(reasons.get(String(offset)), parseReason, `${e.kind} at ${p}@${offset}`);
    }
  }
  assert.deepEqual([...kinds].sort(), ["cancel", "purchase", ...poisonKindNames()].sort());
});
