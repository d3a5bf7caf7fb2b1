import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import zlib from "node:zlib";
import snappy from "snappyjs";
import lz4 from "lz4js";
import { registerCodecs, unlz4, unsnappy, unzstd } from "./codecs.ts";
import { CompressionCodecs, CompressionTypes } from "kafkajs";

const text = new TextEncoder().encode(
  Array.from({ length: 300 }, (_, i) => `{"ticket_id":"t-${i}","seats":["A${i % 9}"]}`).join("\n"),
);

/** snappy-java's framing: its header, then blocks each after a 4-byte big-endian length. */
function xerial(data: Uint8Array, blockBytes: number): Uint8Array {
  const parts: Uint8Array[] = [
    Uint8Array.of(0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1),
  ];
  for (let at = 0; at < data.length; at += blockBytes) {
    const block = snappy.compress(data.subarray(at, at + blockBytes));
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, block.length);
    parts.push(length, block);
  }
  return Buffer.concat(parts);
}

Deno.test("unsnappy() reads a raw snappy block and snappy-java's framing of several blocks", () => {
  assert.deepEqual(unsnappy(snappy.compress(text)), Buffer.from(text));
  assert.deepEqual(unsnappy(xerial(text, 1000)), Buffer.from(text));
  // a framing cut inside a block is refused, not read short
  const framed = xerial(text, 1000);
  assert.throws(() => unsnappy(framed.subarray(0, framed.length - 3)), /cut short/);
});

Deno.test("unlz4() reads an LZ4 frame, unzstd() a zstd frame", () => {
  assert.deepEqual(unlz4(lz4.compress(text)), Buffer.from(text));
  assert.deepEqual(unzstd(zlib.zstdCompressSync(text)), Buffer.from(text));
});

Deno.test("registerCodecs() lets KafkaJS decompress snappy, lz4 and zstd, and refuses to compress with them", async () => {
  registerCodecs();
  type Codec = CompressionTypes.Snappy | CompressionTypes.LZ4 | CompressionTypes.ZSTD;
  const cases: [Codec, Uint8Array][] = [
    [CompressionTypes.Snappy, xerial(text, 4096)],
    [CompressionTypes.LZ4, lz4.compress(text)],
    [CompressionTypes.ZSTD, zlib.zstdCompressSync(text)],
  ];
  for (const [type, packed] of cases) {
    const codec = CompressionCodecs[type]();
    assert.deepEqual(await codec.decompress(Buffer.from(packed)), Buffer.from(text));
    await assert.rejects(() => codec.compress({ buffer: Buffer.from(text) } as never), /gzip/);
  }
});
