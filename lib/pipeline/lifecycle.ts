/**
 * The producer's ticket lifecycle: cancellations of a share of the run's tickets, named poison in
 * place of a share of them, and the manifest of every acknowledged message's expected outcome.
 *
 * Order is the point. Several produce requests are in flight and a retried one can land after a
 * later one, so a message that must follow another (a cancellation its purchase, a seat clash the
 * sale of that seat, a double cancel the first cancel) is only sent once the request holding the
 * earlier one has been acknowledged. Requests go out in rounds; round `j` first waits for round
 * `j - inFlight` (so every round before it is acknowledged too) and may then carry what rounds up
 * to `j - inFlight` made necessary. Which message goes in which round depends only on the seed,
 * the batch size and `inFlight`, never on timing: same seed, same manifest (without `--rate`).
 * @module
 */
import { Buffer } from "node:buffer";
import type { Kafka, RecordMetadata } from "kafkajs";
import { AppError } from "../errors.ts";
import { murmur2 } from "../kafka/partitioner.ts";
import type { Ticket } from "../model/columns.ts";
import { encodeCancel } from "../model/message.ts";
import {
  type Expectation,
  type FixtureKind,
  fixtureKinds,
  makeFixturePoison,
  type RawMessage,
  RUN_KINDS,
  seatClashTicket,
  type SoldSeat,
} from "../model/poison.ts";
import { fraction, pick, type Random, randomUuid, seededRandom } from "../model/random.ts";
import { ManifestWriter } from "./manifest.ts";

/** What the lifecycle needs from the producer's options. */
export interface LifecycleSettings {
  topic: string;
  seed?: number;
  /** Share (0-1) of the run's tickets cancelled after their purchase. @default {0} */
  cancelRate?: number;
  /** Share (0-1) of the messages replaced by poison. @default {0} */
  poisonRate?: number;
  /** Manifest file to write; undefined for none. */
  manifest?: string;
  acks?: string;
  seatClashRate?: number;
  /** Once aborted, no new message: only the cancellations owed for acknowledged purchases. */
  signal?: AbortSignal;
  /** Called with each valid ticket published (purchases and seat clashes). */
  onTicket?: (ticket: Ticket) => void;
}

/** A message for KafkaJS, its partition chosen here (null keys included, so offsets are known). */
export interface PlannedMessage {
  key: string | null;
  value: Buffer | string | null;
  partition: number;
}

/** A round's messages and how many of the run's `--num` slots they fill. */
export interface Round {
  messages: PlannedMessage[];
  slots: number;
}

/** Counts of what the lifecycle sent (acknowledged), by kind. */
export type LifecycleCounts = Record<string, number>;

interface Note {
  key: string | null;
  partition: number;
  kind: string;
  expect: Expectation;
  /** Set when acknowledged: the seat it holds may be re-sold on purpose (seat clash). */
  sold?: SoldSeat;
  /** Set when acknowledged: this cancellation may be sent again (double cancel). */
  cancel?: { key: string; value: Uint8Array; partition: number };
}

interface Owed {
  due: number;
  ticket: Ticket;
  partition: number;
}

const RESERVOIR = 1000;
/** Oversized messages per request, so that a request stays within the broker's 1 MiB limit. */
const MAX_OVERSIZED = 4;
const CANCEL_REASONS = [
  "changed plans",
  "bought the wrong showtime",
  "feeling unwell",
  "double booking",
  "event rescheduled",
];
const STORED: Expectation = { outcome: "stored" };
const CANCELLED: Expectation = { outcome: "cancelled" };

/** Whether `options` ask for the lifecycle (any rate above 0, or a manifest). */
export function wantsLifecycle(options: LifecycleSettings): boolean {
  return (options.cancelRate ?? 0) > 0 || (options.poisonRate ?? 0) > 0 || !!options.manifest;
}

/** Refuses (USAGE) settings whose outcomes are not certain. */
function checkSettings(settings: LifecycleSettings): void {
  if (settings.acks === "0") {
    throw new AppError(
      "USAGE",
      "--cancel-rate, --poison-rate and --manifest need acknowledgements: --acks all or 1",
    );
  }
  if ((settings.seatClashRate ?? 0) > 0) {
    throw new AppError(
      "USAGE",
      "--seat-clash-rate cannot be combined with --cancel-rate, --poison-rate or --manifest " +
        "(its clashes may cross partitions; --poison-rate makes seat clashes with known answers)",
    );
  }
}

/** The partition count of a topic, from Kafka's metadata. */
async function partitionCount(kafka: Kafka, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    const count = topics[0]?.partitions.length ?? 0;
    if (count < 1) throw new AppError("KAFKA", `topic ${topic} has no partitions`);
    return count;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** A cancellation of `ticket`, 1-60 minutes after its purchase, for one of a few reasons. */
function cancelOf(ticket: Ticket, random: Random): Uint8Array {
  const at = Date.parse(ticket.purchased_at) + (1 + random() % 60) * 60_000;
  return encodeCancel({
    ticket_id: ticket.ticket_id,
    cancelled_at: new Date(at).toISOString(),
    reason: pick(random, CANCEL_REASONS),
  });
}

/**
 * Manifest entries of an acknowledged request (offsets from each partition's base offset, in the
 * order its messages were given), and its messages counted by kind.
 */
function recordRound(
  notes: Note[],
  acks: RecordMetadata[],
  topic: string,
  counts: LifecycleCounts,
  manifest?: ManifestWriter,
): void {
  const next = new Map<number, number>();
  for (const a of acks) {
    if (a.topicName === topic) next.set(a.partition, Number(a.baseOffset ?? -1));
  }
  for (const n of notes) {
    counts[n.kind] = (counts[n.kind] ?? 0) + 1;
    if (!manifest) continue;
    const offset = next.get(n.partition) ?? -1;
    if (offset < 0) {
      throw new AppError("KAFKA", `no offset acknowledged for partition ${n.partition}`);
    }
    next.set(n.partition, offset + 1);
    manifest.add({
      topic,
      partition: n.partition,
      offset,
      key: n.key,
      kind: n.kind,
      expect: n.expect.outcome,
      ...(n.expect.reason === undefined ? {} : { reason: n.expect.reason }),
    });
  }
}

/** Adds a message to the round being planned, with what the manifest says of it. */
type Add = (m: RawMessage, note: Omit<Note, "key" | "partition">) => void;

/**
 * Makes the poison of a run: a fixture kind, or one made from what acknowledged rounds sent (a
 * seat sold, a cancel made), each remembered in a bounded reservoir.
 */
class Poisoner {
  readonly #sold: SoldSeat[] = [];
  readonly #cancels: NonNullable<Note["cancel"]>[] = [];
  readonly #kinds: readonly FixtureKind[] = fixtureKinds();
  readonly #random: Random;
  #oversized = 0;

  /**
   * `cancels`: the run cancels tickets (unknown and double cancels fit in); `validTicket` gives
   * a generated ticket that is published valid, `nextTicket` one that is broken first.
   */
  constructor(
    random: Random,
    readonly cancels: boolean,
    readonly partitionOf: (key: string | null) => number,
    readonly validTicket: () => Ticket,
    readonly nextTicket: () => Ticket,
  ) {
    this.#random = random;
  }

  /** A new request: its count of oversized messages starts again. */
  newRound(): void {
    this.#oversized = 0;
  }

  /** A poison message of a kind picked at random among those the run can make now. */
  make(add: Add): void {
    const kinds = this.#kinds.length + 3;
    let k = this.#random() % kinds;
    const runKind = k - this.#kinds.length;
    const available = runKind === 0
      ? this.#sold.length > 0
      : runKind === 1
      ? this.cancels
      : runKind === 2
      ? this.#cancels.length > 0
      : this.#kinds[k]!.name !== "oversized" || this.#oversized < MAX_OVERSIZED;
    if (!available) {
      do k = this.#random() % this.#kinds.length; while (
        this.#kinds[k]!.name === "oversized" && this.#oversized >= MAX_OVERSIZED
      );
    }
    if (!available || runKind < 0) {
      const kind = this.#kinds[k]!;
      if (kind.name === "oversized") this.#oversized++;
      const message = makeFixturePoison(kind, this.nextTicket(), this.#random);
      add(message, { kind: kind.name, expect: { outcome: "dead_letter", reason: kind.reason } });
    } else if (runKind === 0) {
      const sold = pick(this.#random, this.#sold);
      let id: string;
      let tries = 0;
      do {
        id = randomUuid(this.#random);
        if (++tries > 1_000_000) throw new Error("no ticket_id for the partition");
      } while (this.partitionOf(id) !== sold.partition);
      const ticket = seatClashTicket(sold, this.validTicket(), id);
      add({ key: id, value: JSON.stringify(ticket) }, RUN_KINDS.seatClash);
    } else if (runKind === 1) {
      const id = randomUuid(this.#random);
      const value = encodeCancel({
        ticket_id: id,
        cancelled_at: new Date(Date.UTC(2026, 0, 1) + this.#random() % 86_400_000).toISOString(),
        reason: pick(this.#random, CANCEL_REASONS),
      });
      add({ key: id, value }, RUN_KINDS.unknownCancel);
    } else {
      const first = pick(this.#random, this.#cancels);
      add({ key: first.key, value: first.value }, RUN_KINDS.doubleCancel);
    }
  }

  /** What an acknowledged round makes possible: seats to clash with, cancels to repeat. */
  admit(notes: Note[]): void {
    for (const n of notes) {
      if (n.sold) this.#remember(this.#sold, n.sold);
      if (n.cancel) this.#remember(this.#cancels, n.cancel);
    }
  }

  #remember<T>(list: T[], item: T): void {
    if (list.length < RESERVOIR) list.push(item);
    else list[this.#random() % RESERVOIR] = item;
  }
}

/** Plans the rounds of a run with cancellations, poison and a manifest; see the module doc. */
export class Lifecycle {
  readonly #random: Random;
  readonly #cancelRate: number;
  readonly #poisonRate: number;
  readonly #manifest?: ManifestWriter;
  readonly #rounds = new Map<number, { notes: Note[]; acked?: Promise<boolean> }>();
  readonly #owed: Owed[] = [];
  readonly #poisoner?: Poisoner;
  #partitions = 0;
  #round = 0;
  #error: unknown;
  /** Acknowledged messages by kind. */
  readonly counts: LifecycleCounts = {};

  /**
   * Checks the settings (a USAGE error for a combination whose outcomes are not certain) and
   * opens the manifest. `nextTicket` gives the run's next generated ticket.
   */
  constructor(
    readonly settings: LifecycleSettings,
    readonly nextTicket: () => Ticket,
    readonly limits: { batchSize: number; inFlight: number },
  ) {
    checkSettings(settings);
    this.#random = seededRandom(settings.seed, 1);
    this.#cancelRate = settings.cancelRate ?? 0;
    this.#poisonRate = settings.poisonRate ?? 0;
    if (this.#poisonRate > 0) {
      this.#poisoner = new Poisoner(
        this.#random,
        this.#cancelRate > 0,
        (key) => this.#partitionOf(key),
        () => {
          const ticket = nextTicket();
          settings.onTicket?.(ticket);
          return ticket;
        },
        nextTicket,
      );
    }
    if (settings.manifest) {
      this.#manifest = new ManifestWriter(settings.manifest, {
        manifest: "tickets",
        version: 1,
        ...(settings.seed === undefined ? {} : { seed: settings.seed }),
        cancelRate: this.#cancelRate,
        poisonRate: this.#poisonRate,
      });
    }
  }

  /**
   * Learns the topic's partition count from Kafka (messages are given their partition here), or
   * takes it as given.
   */
  async start(kafka: Kafka | number): Promise<void> {
    this.#partitions = typeof kafka === "number"
      ? kafka
      : await partitionCount(kafka, this.settings.topic);
  }

  /** True while cancellations are still to be sent. */
  owes(): boolean {
    return this.#owed.length > 0;
  }

  /**
   * The next round: waits until round `j - inFlight` is acknowledged, then takes what is due
   * and fills up to `slots` of the run's messages (none once the run is stopped: a purchase in the
   * manifest as cancelled gets its cancel). Empty when nothing is left, or when a request failed
   * (the producer has its error).
   */
  async next(slots: number): Promise<Round> {
    if (this.settings.signal?.aborted) slots = 0;
    for (;;) {
      const j = this.#round++;
      const back = this.#rounds.get(j - this.limits.inFlight);
      if (back) {
        this.#rounds.delete(j - this.limits.inFlight);
        if (!(await back.acked)) return { messages: [], slots: 0 };
        this.#poisoner?.admit(back.notes);
      }
      const round: Round = { messages: [], slots: 0 };
      const notes: Note[] = [];
      const add: Add = (m, note) => {
        const partition = this.#partitionOf(m.key);
        round.messages.push({
          key: m.key,
          value: m.value instanceof Uint8Array ? Buffer.from(m.value) : m.value,
          partition,
        });
        notes.push({ key: m.key, partition, ...note });
      };
      this.#poisoner?.newRound();
      while (this.#owed.length > 0 && this.#owed[0]!.due <= j) {
        if (round.messages.length >= this.limits.batchSize) break;
        this.#cancel(this.#owed.shift()!, add);
      }
      const fill = Math.min(slots, this.limits.batchSize - round.messages.length);
      for (; round.slots < fill; round.slots++) this.#slot(j, add);
      if (round.messages.length > 0 || !this.owes()) {
        this.#rounds.set(j, { notes });
        return round;
      }
    }
  }

  /** Hands the lifecycle the promise of the request of the round `next` gave last. */
  sent(request: Promise<RecordMetadata[]>): void {
    const entry = this.#rounds.get(this.#round - 1);
    if (!entry) return;
    entry.acked = request.then((acks) => {
      try {
        recordRound(entry.notes, acks, this.settings.topic, this.counts, this.#manifest);
        return true;
      } catch (error) {
        this.#error ??= error;
        return false;
      }
    }, () => false);
  }

  /** Writes and closes the manifest; throws if an acknowledgement could not be recorded. */
  close(): void {
    this.#manifest?.close();
    if (this.#error !== undefined) throw this.#error;
  }

  #partitionOf(key: string | null): number {
    return key === null
      ? this.#random() % this.#partitions
      : (murmur2(key) & 0x7fffffff) % this.#partitions;
  }

  /** One of the run's slots: a purchase (perhaps to be cancelled later) or poison. */
  #slot(round: number, add: Add) {
    if (this.#poisoner && fraction(this.#random) < this.#poisonRate) {
      return this.#poisoner.make(add);
    }
    const ticket = this.nextTicket();
    this.settings.onTicket?.(ticket);
    const cancel = this.#cancelRate > 0 && fraction(this.#random) < this.#cancelRate;
    const partition = this.#partitionOf(ticket.ticket_id);
    if (cancel) this.#owed.push({ due: round + this.limits.inFlight, ticket, partition });
    add({ key: ticket.ticket_id, value: JSON.stringify(ticket) }, {
      kind: "purchase",
      expect: cancel ? CANCELLED : STORED,
      ...(cancel || !this.#poisoner ? {} : {
        sold: {
          theater: ticket.theater,
          movie: ticket.movie,
          showtime: ticket.showtime,
          seat: ticket.seats[0]!,
          partition,
        },
      }),
    });
  }

  #cancel(owed: Owed, add: Add) {
    const value = cancelOf(owed.ticket, this.#random);
    add({ key: owed.ticket.ticket_id, value }, {
      kind: "cancel",
      expect: CANCELLED,
      cancel: { key: owed.ticket.ticket_id, value, partition: owed.partition },
    });
  }
}
