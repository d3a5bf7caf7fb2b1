import assert from "node:assert/strict";
import { TicketGenerator } from "./generator.ts";

async function sha256(text: string): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("");
}

// SHA-256 of the first 30,000 tickets' JSON (one a line) of a seed, as the generator made them
// before it was made faster (commit 8e10995): --seed gives the same tickets as before. A change
// of the tickets on purpose (or of faker's version) changes these; say so in the commit.
const GOLDEN: [seed: number, seatClashRate: number, sha256: string][] = [
  [1, 0, "1f980cdfa539965d8422777ffe9f53f372fc0af852d0062a60354e7dd7f556d2"],
  [42, 0.1, "2530f04a4cbd5bc663e024499cf3ab27c4d3dc1cdba5ec5dfce2912fb60c402e"],
  [7, 0.5, "1f30d50d12da130b1dcea9baafe97ad99c4e94d5070bb7f79b891770ae53abd4"],
];

Deno.test("TicketGenerator() gives each seed the tickets it gave before", async () => {
  for (const [seed, seatClashRate, expected] of GOLDEN) {
    const generator = new TicketGenerator({ seed, seatClashRate });
    const lines = Array.from({ length: 30_000 }, () => JSON.stringify(generator.next()));
    assert.equal(await sha256(lines.join("\n")), expected, `seed ${seed}`);
  }
});

Deno.test("nextWithJson() gives the next ticket and exactly its JSON.stringify text", () => {
  const starts = [
    undefined,
    new Date("1969-12-31T23:59:59.995Z"),
    new Date("9999-12-01T00:00:00Z"),
  ];
  for (const [i, startTime] of starts.entries()) {
    for (const seatClashRate of [0, 0.3]) {
      const a = new TicketGenerator({ seed: 100 + i, seatClashRate, startTime });
      const b = new TicketGenerator({ seed: 100 + i, seatClashRate, startTime });
      for (let n = 0; n < 20_000; n++) {
        const { ticket, json } = a.nextWithJson();
        assert.equal(json, JSON.stringify(ticket), `ticket ${n}`);
        assert.deepEqual(ticket, b.next(), `ticket ${n}`);
      }
    }
  }
});
