/**
 * A faster encoding of KafkaJS's uncompressed produce requests (versions 3-7, the record batch
 * format v2). KafkaJS builds each record in its own Encoder (a Buffer allocated per record),
 * computes 64-bit varints with Long objects, copies every record into the batch and the batch
 * into the request, and checksums a byte at a time. This writes the same bytes in one pass into
 * one buffer: records in place, lengths fixed up afterwards, CRC-32C eight bytes a step.
 * Compressed requests, and records with headers or unusual keys and values, keep KafkaJS's own
 * code. `installFastProduceRequests()` puts it in place (nothing happens on import).
 * @module
 */
import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import { crc32c } from "./crc32c.ts";

const require = createRequire(import.meta.url);

/** KafkaJS's Encoder, as far as this module uses it. */
interface KafkaJsEncoder {
  buf: Buffer;
  offset: number;
  readonly buffer: Buffer;
  writeString(value: string | null): KafkaJsEncoder;
  writeInt16(value: number): KafkaJsEncoder;
  writeInt32(value: number): KafkaJsEncoder;
  writeInt64(value: unknown): KafkaJsEncoder;
  writeVarLong(value: unknown): KafkaJsEncoder;
}

/** A message as KafkaJS hands it to the produce request. */
export interface ProduceMessage {
  key?: unknown;
  value?: unknown;
  headers?: unknown;
  timestamp?: unknown;
  partition?: number;
}

/** The arguments of KafkaJS's produce request (`protocol/requests/produce/v3/request.js`). */
export interface ProduceRequestArgs {
  acks: number;
  timeout: number;
  compression?: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  topicData: {
    topic: string;
    partitions: { partition: number; firstSequence?: number; messages: ProduceMessage[] }[];
  }[];
}

/** KafkaJS's produce request: its fields and `encode()`. */
export interface ProduceRequest {
  apiKey: number;
  apiVersion: number;
  apiName: string;
  encode: () => Promise<KafkaJsEncoder>;
  [other: string]: unknown;
}

type RequestFactory = (args: ProduceRequestArgs) => ProduceRequest;

const Encoder = require("kafkajs/src/protocol/encoder.js") as new (size?: number) => KafkaJsEncoder;
const Long = require("kafkajs/src/utils/long.js") as { fromInt(value: number): unknown };
const Record = require("kafkajs/src/protocol/recordBatch/record/v0/index.js") as (
  record: ProduceMessage & { offsetDelta: number; timestampDelta: number },
) => KafkaJsEncoder;
const NONE = 0; // KafkaJS's CompressionTypes.None
const TRANSACTIONAL_MASK = 16;
const MAGIC_BYTE = 2;
const utf8 = new TextEncoder();

/** LEB128 of the low 32 bits of `v`, KafkaJS's `writeUVarInt`; returns the new position. */
function putUVarInt(buf: Uint8Array, p: number, v: number): number {
  while ((v & 0xffffff80) !== 0) {
    buf[p++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[p++] = v & 0x7f;
  return p;
}

function sizeOfUVarInt(v: number): number {
  let bytes = 1;
  while ((v & 0xffffff80) !== 0) {
    bytes++;
    v >>>= 7;
  }
  return bytes;
}

const zigZag = (v: number) => (v << 1) ^ (v >> 31);

/** One growing buffer the whole request is written into. */
class Output {
  bytes: Uint8Array;
  pos = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  ensure(room: number): Uint8Array {
    if (this.pos + room > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.pos + room));
      grown.set(this.bytes.subarray(0, this.pos));
      this.bytes = grown;
    }
    return this.bytes;
  }
  int32(v: number): number {
    const b = this.ensure(4), p = this.pos;
    b[p] = v >>> 24, b[p + 1] = v >>> 16, b[p + 2] = v >>> 8, b[p + 3] = v;
    this.pos = p + 4;
    return p;
  }
  raw(chunk: Uint8Array): void {
    this.ensure(chunk.length).set(chunk, this.pos);
    this.pos += chunk.length;
  }
  putInt32At(at: number, v: number): void {
    const b = this.bytes;
    b[at] = v >>> 24, b[at + 1] = v >>> 16, b[at + 2] = v >>> 8, b[at + 3] = v;
  }
}

/** Writes `s` in UTF-8 at `p` (room for 3 bytes a char is there); returns the bytes written. */
function putUtf8(buf: Uint8Array, p: number, s: string): number {
  const n = s.length;
  if (n < 128) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[p + i] = c;
    }
    if (i === n) return n;
  }
  return utf8.encodeInto(s, buf.subarray(p)).written;
}

/** A key or value as KafkaJS's `writeVarIntBytes` writes it (null, Buffer or string). */
function putVarIntBytes(buf: Uint8Array, p: number, v: unknown): number {
  if (v === null || v === undefined) {
    buf[p] = 1; // zigzag(-1)
    return p + 1;
  }
  if (typeof v === "string") {
    const guess = sizeOfUVarInt(zigZag(v.length)), start = p + guess;
    const n = putUtf8(buf, start, v);
    const size = sizeOfUVarInt(zigZag(n));
    if (size !== guess) buf.copyWithin(p + size, start, start + n);
    putUVarInt(buf, p, zigZag(n));
    return p + size + n;
  }
  const bytes = v as Buffer;
  p = putUVarInt(buf, p, zigZag(bytes.length));
  buf.set(bytes, p);
  return p + bytes.length;
}

/** Bytes a key or value may take (UTF-8 at most 3 bytes per UTF-16 unit); -1 if not fast. */
function roomFor(v: unknown): number {
  if (v === null || v === undefined) return 1;
  if (typeof v === "string") return 5 + 3 * v.length;
  return Buffer.isBuffer(v) ? 5 + v.length : -1;
}

/** The zigzag varlong of a timestamp delta, as KafkaJS's `writeVarLong`; returns the position. */
function putVarLong(buf: Uint8Array, p: number, v: number): number {
  if (Number.isSafeInteger(v) && Math.abs(v) < 2 ** 51) {
    let z = v >= 0 ? v * 2 : -v * 2 - 1;
    while (z >= 0x80) {
      buf[p++] = (z % 0x80) | 0x80;
      z = Math.floor(z / 0x80);
    }
    buf[p++] = z;
    return p;
  }
  const bytes = new Encoder().writeVarLong(v).buffer; // NaN, huge or fractional: KafkaJS decides
  buf.set(bytes, p);
  return p + bytes.length;
}

/** One record (format v2) at the end of `out`, byte for byte as KafkaJS's `Record` encodes it. */
function writeRecord(out: Output, m: ProduceMessage, offsetDelta: number, delta: number): void {
  const keyRoom = roomFor(m.key), valueRoom = roomFor(m.value);
  if (m.headers !== undefined || keyRoom < 0 || valueRoom < 0) {
    out.raw(Record({ ...m, offsetDelta, timestampDelta: delta }).buffer);
    return;
  }
  const buf = out.ensure(5 + 1 + 10 + 5 + keyRoom + valueRoom + 1);
  const start = out.pos;
  const likely = 8 + (typeof m.key === "string" ? m.key.length : keyRoom) +
    (typeof m.value === "string" ? m.value.length : valueRoom); // ASCII text
  const guess = sizeOfUVarInt(zigZag(likely));
  let p = start + guess;
  buf[p++] = 0; // attributes
  p = putVarLong(buf, p, delta);
  p = putUVarInt(buf, p, zigZag(offsetDelta));
  p = putVarIntBytes(buf, p, m.key);
  p = putVarIntBytes(buf, p, m.value);
  buf[p++] = 0; // no headers
  const body = p - start - guess;
  const size = sizeOfUVarInt(zigZag(body));
  if (size !== guess) {
    buf.copyWithin(start + size, start + guess, p);
    p += size - guess;
  }
  putUVarInt(buf, start, zigZag(body));
  out.pos = p;
}

/** One partition's data: partition, size, and its record batch (KafkaJS's `RecordBatch`). */
function writePartition(
  out: Output,
  data: ProduceRequestArgs["topicData"][number]["partitions"][number],
  transactional: boolean,
  producerId: unknown,
  producerEpoch: number | undefined,
): void {
  const { messages } = data;
  const dateNow = Date.now();
  let firstTimestamp: unknown = dateNow, maxTimestamp: unknown = dateNow;
  if (messages.some((m) => m.timestamp != null)) { // KafkaJS's order: as strings
    const stamps = messages.map((m) => m.timestamp).filter((t) => t != null).sort();
    firstTimestamp = stamps[0];
    maxTimestamp = stamps[stamps.length - 1];
  }
  out.int32(data.partition);
  const sizeAt = out.int32(0);
  const batchAt = out.int32(0); // first offset, int64 0
  out.int32(0);
  const lengthAt = out.int32(0);
  out.int32(0); // partition leader epoch
  out.ensure(1)[out.pos++] = MAGIC_BYTE;
  const crcAt = out.int32(0);
  const bodyAt = out.pos;
  out.raw(
    new Encoder()
      .writeInt16(NONE | (transactional ? TRANSACTIONAL_MASK : 0))
      .writeInt32(messages.length - 1)
      .writeInt64(firstTimestamp)
      .writeInt64(maxTimestamp)
      .writeInt64(producerId)
      .writeInt16(producerEpoch === undefined ? 0 : producerEpoch)
      .writeInt32(data.firstSequence === undefined ? 0 : data.firstSequence).buffer,
  );
  out.int32(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const delta = ((m.timestamp || dateNow) as number) - (firstTimestamp as number);
    writeRecord(out, m, i, delta);
  }
  out.putInt32At(crcAt, crc32c(out.bytes, bodyAt, out.pos));
  out.putInt32At(lengthAt, out.pos - lengthAt - 4);
  out.putInt32At(sizeAt, out.pos - batchAt);
}

/** The body of an uncompressed produce request, the bytes KafkaJS's own `encode()` makes. */
export function encodeProduceRequest(args: ProduceRequestArgs): KafkaJsEncoder {
  let estimate = 256;
  for (const { partitions } of args.topicData) {
    for (const { messages } of partitions) {
      estimate += 128;
      for (const m of messages) {
        estimate += 24 + Math.max(0, roomFor(m.key)) / (typeof m.key === "string" ? 3 : 1) +
          Math.max(0, roomFor(m.value)) / (typeof m.value === "string" ? 3 : 1);
      }
    }
  }
  const out = new Output(Math.ceil(estimate));
  const transactionalId = args.transactionalId === undefined ? null : args.transactionalId;
  const producerId = args.producerId === undefined ? Long.fromInt(-1) : args.producerId;
  out.raw(
    new Encoder().writeString(transactionalId).writeInt16(args.acks).writeInt32(args.timeout)
      .writeInt32(args.topicData.length).buffer,
  );
  for (const { topic, partitions } of args.topicData) {
    out.raw(new Encoder().writeString(topic).writeInt32(partitions.length).buffer);
    for (const data of partitions) {
      writePartition(out, data, !!transactionalId, producerId, args.producerEpoch);
    }
  }
  const encoder = new Encoder(0);
  encoder.buf = Buffer.from(out.bytes.buffer, 0, out.pos);
  encoder.offset = out.pos;
  return encoder;
}

/** Marks a wrapped factory; holds KafkaJS's own. */
const ORIGINAL = Symbol("KafkaJS's produce request");
type Wrapped = RequestFactory & { [ORIGINAL]?: RequestFactory };

/** The produce request versions KafkaJS 2.2.4 has with record batches (all encode alike). */
export const PRODUCE_VERSIONS = [3, 4, 5, 6, 7] as const;

/** KafkaJS's module path of a produce request version. */
export function produceRequestPath(version: number): string {
  return require.resolve(`kafkajs/src/protocol/requests/produce/v${version}/request.js`);
}

/** KafkaJS's own request factory of a produce version, also once installed (for tests). */
export function kafkaJsProduceRequest(version: number): RequestFactory {
  const loaded = require(produceRequestPath(version)) as Wrapped;
  return loaded[ORIGINAL] ?? loaded;
}

/** Whether {@linkcode installFastProduceRequests} wrapped this version. */
export function isFastProduceRequest(version: number): boolean {
  return (require(produceRequestPath(version)) as Wrapped)[ORIGINAL] !== undefined;
}

/**
 * Makes KafkaJS encode its uncompressed produce requests with {@linkcode encodeProduceRequest}
 * (idempotent): each version's request module, in KafkaJS's module cache, is wrapped so that the
 * request it returns encodes here. Fields, versions and compressed requests are KafkaJS's own.
 */
export function installFastProduceRequests(): void {
  for (const version of PRODUCE_VERSIONS) {
    if (isFastProduceRequest(version)) continue;
    const original = kafkaJsProduceRequest(version);
    const fast = (args: ProduceRequestArgs) => {
      const request = original(args);
      if (args.compression === undefined || args.compression === NONE) {
        request.encode = () => {
          try {
            return Promise.resolve(encodeProduceRequest(args));
          } catch (error) {
            return Promise.reject(error); // as KafkaJS's async encode
          }
        };
      }
      return request;
    };
    require.cache[produceRequestPath(version)]!.exports = Object.assign(fast, {
      [ORIGINAL]: original,
    });
  }
}
