/**
 * Reading record batches that other producers compressed with snappy, lz4 or zstd. KafkaJS has
 * only gzip built in and stops a consumer at the first batch in another codec ("ZSTD compression
 * not implemented"), yet Kafka's Java client, librdkafka (kcat, confluent-kafka-python, Go) and
 * brokers with `compression.type` set write them routinely. zstd comes from `node:zlib`, snappy
 * from snappyjs (raw blocks, as librdkafka writes them, or the block framing of the Java client's
 * snappy-java), lz4 frames from lz4js. This pipeline compresses with gzip or not at all, so these
 * codecs only decompress.
 * @module
 */
import { Buffer } from "node:buffer";
import zlib from "node:zlib";
import { CompressionCodecs, CompressionTypes } from "kafkajs";
import snappy from "snappyjs";
import lz4 from "lz4js";
import { AppError } from "../errors.ts";

/** The first bytes of snappy-java's framing: `\x82SNAPPY\0`, a version and a compatible one. */
const XERIAL_MAGIC = [0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00];
const XERIAL_HEADER_BYTES = 16;

function isXerial(data: Uint8Array): boolean {
  return data.length >= XERIAL_HEADER_BYTES && XERIAL_MAGIC.every((b, i) => data[i] === b);
}

/** Joins decompressed blocks into one buffer. */
function concat(blocks: Uint8Array[]): Buffer {
  return blocks.length === 1 ? Buffer.from(blocks[0]!) : Buffer.concat(blocks);
}

/**
 * Snappy as Kafka producers write it: one raw snappy block, or snappy-java's framing (its header,
 * then blocks each after a 4-byte big-endian length).
 */
export function unsnappy(data: Uint8Array): Buffer {
  if (!isXerial(data)) return Buffer.from(snappy.uncompress(data));
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const blocks: Uint8Array[] = [];
  for (let at = XERIAL_HEADER_BYTES; at < data.length;) {
    if (at + 4 > data.length) throw new Error("snappy: a block length is cut short");
    const length = view.getUint32(at);
    at += 4;
    if (at + length > data.length) throw new Error("snappy: a block is cut short");
    blocks.push(snappy.uncompress(data.subarray(at, at + length)));
    at += length;
  }
  return concat(blocks);
}

/** An LZ4 frame (Kafka's record batches since message format 2 hold standard frames). */
export function unlz4(data: Uint8Array): Buffer {
  return Buffer.from(lz4.decompress(data));
}

/** A zstd frame. */
export function unzstd(data: Uint8Array): Buffer {
  return zlib.zstdDecompressSync(data);
}

/** A KafkaJS codec that decompresses with `decompress` and refuses to compress. */
function decompressing(name: string, decompress: (data: Uint8Array) => Buffer) {
  return () => ({
    compress(): Promise<Buffer> {
      return Promise.reject(
        new AppError("USAGE", `${name}: this pipeline compresses with gzip or not at all`),
      );
    },
    decompress(buffer: Buffer): Promise<Buffer> {
      try {
        return Promise.resolve(decompress(buffer));
      } catch (error) {
        return Promise.reject(error);
      }
    },
  });
}

/** Lets every KafkaJS client of this process read snappy, lz4 and zstd batches (idempotent). */
export function registerCodecs(): void {
  CompressionCodecs[CompressionTypes.Snappy] = decompressing("snappy", unsnappy);
  CompressionCodecs[CompressionTypes.LZ4] = decompressing("lz4", unlz4);
  CompressionCodecs[CompressionTypes.ZSTD] = decompressing("zstd", unzstd);
}
