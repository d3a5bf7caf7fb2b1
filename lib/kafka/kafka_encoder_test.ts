import assert from "node:assert/strict";
import { installFastVarints, KafkaEncoder, originalWriteUVarInt } from "./kafka_encoder.ts";

function bytesOf(
  write: (this: InstanceType<typeof KafkaEncoder>, v: number) => unknown,
  v: number,
) {
  const encoder = new KafkaEncoder();
  encoder.offset = 3; // not at the start, as inside a record
  write.call(encoder, v);
  return Array.from(encoder.buf.subarray(3, encoder.offset));
}

Deno.test("the varint writer writes the same bytes as KafkaJS's own, for every size and sign", () => {
  assert.equal(KafkaEncoder.prototype.writeUVarInt, originalWriteUVarInt, "installed on import");
  installFastVarints();
  assert.notEqual(KafkaEncoder.prototype.writeUVarInt, originalWriteUVarInt, "not installed");
  const values = [0, 1, 127, 128, 255, 300, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455];
  values.push(268_435_456, 2_147_483_647, -1, -2, -128, -2_147_483_648, 4_294_967_295);
  for (let i = 0; i < 10_000; i++) values.push(Math.floor(Math.random() * 2 ** 32) - 2 ** 31);
  for (const v of values) {
    assert.deepEqual(
      bytesOf(KafkaEncoder.prototype.writeUVarInt, v),
      bytesOf(originalWriteUVarInt, v),
      `value ${v}`,
    );
  }
});

Deno.test("the varint writer grows the buffer when it is full", () => {
  installFastVarints();
  const encoder = new KafkaEncoder();
  const end = encoder.buf.length - 1;
  encoder.offset = end;
  encoder.writeUVarInt(2 ** 30); // 5 bytes
  assert.equal(encoder.offset, end + 5);
  assert.ok(encoder.buf.length >= end + 5);
  assert.deepEqual(Array.from(encoder.buf.subarray(end, end + 5)), [0x80, 0x80, 0x80, 0x80, 0x04]);
});
