/**
 * Named kinds of bad data with known answers, for `producer --poison-rate`: each kind says how to
 * make a message of it from a generated ticket and a seeded random source, and what the pipeline
 * must make of it (the dead-letter reason the consumer gives, or a counted duplicate). Most kinds
 * come from fixtures/poison.json; three depend on what the run has sent (a seat already sold, a
 * cancellation already made) and are made here from that.
 * @module
 */
import { Buffer } from "node:buffer";
import type { Ticket } from "./columns.ts";
import { UNKNOWN_TICKET } from "./message.ts";
import { pick, type Random } from "./random.ts";

/** What must become of a message: its ticket stored, its ticket cancelled, or a dead letter. */
export type Outcome = "stored" | "cancelled" | "dead_letter";

/** The expected outcome of a message, with the dead letter's reason. */
export interface Expectation {
  outcome: Outcome;
  /** The dead letter's reason, exactly as the consumer records it (dead letters only). */
  reason?: string;
}

/** A message as the producer publishes it: key and value (null for none). */
export interface RawMessage {
  key: string | null;
  value: string | Uint8Array | null;
}

/** One way to break a ticket, as fixtures/poison.json writes it (see its `about`). */
export interface PoisonVariant {
  text?: string | null;
  base64?: string;
  truncate?: number;
  omit?: string;
  patch?: Record<string, unknown>;
  invalidUtf8?: string;
  pad?: number;
  key?: string | null;
}

/** A kind of bad data made from a generated ticket alone. */
export interface FixtureKind {
  name: string;
  /** The dead-letter reason every variant gets. */
  reason: string;
  variants: PoisonVariant[];
}

/** Kinds that need what the run sent before: made by the producer's lifecycle. */
export const RUN_KINDS = {
  /** A valid new ticket for a seat a stored ticket of this run holds (same show, same partition). */
  seatClash: { kind: "seat-clash", expect: { outcome: "dead_letter", reason: "SEAT_TAKEN" } },
  /** A cancellation of a ticket nobody bought. */
  unknownCancel: {
    kind: "unknown-cancel",
    expect: { outcome: "dead_letter", reason: UNKNOWN_TICKET },
  },
  /** A cancellation sent again after the first was acknowledged: a counted duplicate. */
  doubleCancel: { kind: "double-cancel", expect: { outcome: "cancelled" } },
} as const satisfies Record<string, { kind: string; expect: Expectation }>;

let kinds: FixtureKind[] | undefined;

/** The fixture kinds (fixtures/poison.json), read once. */
export function fixtureKinds(): readonly FixtureKind[] {
  kinds ??= (JSON.parse(
    Deno.readTextFileSync(new URL("../../fixtures/poison.json", import.meta.url)),
  ) as { kinds: FixtureKind[] }).kinds;
  return kinds;
}

/** Every kind's name: the fixture kinds, then the kinds made from the run. */
export function poisonKindNames(): string[] {
  return [...fixtureKinds().map((k) => k.name), ...Object.values(RUN_KINDS).map((k) => k.kind)];
}

const encoder = new TextEncoder();

/** The message of one variant applied to `ticket`. */
export function applyVariant(variant: PoisonVariant, ticket: Ticket): RawMessage {
  const key = "key" in variant ? variant.key ?? null : ticket.ticket_id;
  if ("text" in variant) return { key, value: variant.text ?? null };
  if (variant.base64 !== undefined) {
    return { key, value: new Uint8Array(Buffer.from(variant.base64, "base64")) };
  }
  const json = JSON.stringify(ticket);
  if (variant.truncate !== undefined) return { key, value: json.slice(0, -variant.truncate) };
  if (variant.invalidUtf8 !== undefined) {
    const value = (ticket as unknown as Record<string, unknown>)[variant.invalidUtf8];
    const before = json.indexOf(`"${variant.invalidUtf8}":"`);
    if (typeof value !== "string" || value === "" || before < 0) {
      throw new Error(`poison: field ${variant.invalidUtf8} is not a non-empty text`);
    }
    const at = encoder.encode(json.slice(0, before + variant.invalidUtf8.length + 4)).length;
    const bytes = encoder.encode(json);
    bytes[at] = 0xff; // never valid in UTF-8
    return { key, value: bytes };
  }
  const o: Record<string, unknown> = { ...ticket };
  if (variant.omit !== undefined) delete o[variant.omit];
  Object.assign(o, variant.patch ?? {});
  if (variant.pad !== undefined) o.note = "x".repeat(variant.pad);
  return { key, value: JSON.stringify(o) };
}

/** A message of a fixture kind: one of its variants, picked by `random`, applied to `ticket`. */
export function makeFixturePoison(kind: FixtureKind, ticket: Ticket, random: Random): RawMessage {
  return applyVariant(pick(random, kind.variants), ticket);
}

/** A seat a stored ticket of the run holds, and the show it is for. */
export interface SoldSeat {
  theater: string;
  movie: string;
  showtime: string;
  seat: string;
  /** The partition of the ticket that holds it. */
  partition: number;
}

/**
 * A valid ticket that re-sells `sold`: `fresh`'s buyer, id `ticketId`, one seat. Sent after the
 * holder's purchase was acknowledged, to the same partition, it must be refused as SEAT_TAKEN.
 */
export function seatClashTicket(sold: SoldSeat, fresh: Ticket, ticketId: string): Ticket {
  return {
    ...fresh,
    ticket_id: ticketId,
    theater: sold.theater,
    movie: sold.movie,
    showtime: sold.showtime,
    seats: [sold.seat],
    price: { amount: 12.5, currency: fresh.price.currency },
  };
}
