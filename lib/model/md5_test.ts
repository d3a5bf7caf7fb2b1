import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { md5Hex, md5Uuid } from "./md5.ts";

const reference = (text: string) => createHash("md5").update(text).digest("hex");

Deno.test("md5Hex: RFC 1321's test suite", () => {
  const suite: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
    [
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
      "d174ab98d277d9f5a5611c2c9f419d9f",
    ],
    ["1234567890".repeat(8), "57edf4a22be3c955ac49da2e2107b67a"],
  ];
  for (const [text, digest] of suite) assert.equal(md5Hex(text), digest, JSON.stringify(text));
});

Deno.test("md5Hex: equals node:crypto's MD5 of the UTF-8 bytes, at every padding boundary", () => {
  for (let n = 0; n < 200; n++) {
    const text = "é🎟x".repeat(n).slice(0, n); // lone surrogates at odd cuts: encoded as U+FFFD
    assert.equal(md5Hex(text), reference(text), `length ${n}`);
  }
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 300 }), (text) => {
      assert.equal(md5Hex(text), reference(text));
    }),
    { numRuns: 2000 },
  );
});

Deno.test("md5Uuid: node:crypto's MD5 hex digits, split 8-4-4-4-12", () => {
  const dashed = (hex: string) =>
    `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
      hex.slice(20)
    }`;
  fc.assert(
    fc.property(fc.string({ unit: "grapheme", maxLength: 120 }), (text) => {
      assert.equal(md5Uuid(text), dashed(reference(text)));
    }),
    { numRuns: 1000 },
  );
});
