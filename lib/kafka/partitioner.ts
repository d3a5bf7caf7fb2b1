/**
 * KafkaJS's default partitioner (Java-compatible: murmur2 of the key, else round robin) with a
 * 32-bit murmur2: KafkaJS computes it with 64-bit Long objects and copies each key into a Buffer,
 * ~15% of the producer's CPU. Same partition for every key; passed as `createPartitioner`.
 * @module
 */
import { Buffer } from "node:buffer";
import type { ICustomPartitioner, PartitionerArgs } from "kafkajs";

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const utf8 = new TextEncoder();

/** Kafka's murmur2 (as in Java's `Utils.murmur2` and KafkaJS) of bytes, a signed 32-bit number. */
export function murmur2Bytes(data: Uint8Array): number {
  const length = data.length;
  let h = SEED ^ length;
  const length4 = length & ~3;
  for (let i = 0; i < length4; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  switch (length & 3) {
    case 3:
      h ^= data[length4 + 2]! << 16;
    // falls through
    case 2:
      h ^= data[length4 + 1]! << 8;
    // falls through
    case 1:
      h ^= data[length4]!;
      h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** murmur2 of an ASCII string's bytes, read from its char codes; undefined when not ASCII. */
function murmur2Ascii(s: string): number | undefined {
  const length = s.length;
  let h = SEED ^ length;
  const length4 = length & ~3;
  let seen = 0;
  for (let i = 0; i < length4; i += 4) {
    const b0 = s.charCodeAt(i), b1 = s.charCodeAt(i + 1);
    const b2 = s.charCodeAt(i + 2), b3 = s.charCodeAt(i + 3);
    seen |= b0 | b1 | b2 | b3;
    let k = b0 | (b1 << 8) | (b2 << 16) | (b3 << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  for (let i = length4; i < length; i++) seen |= s.charCodeAt(i);
  if (seen > 0x7f) return undefined;
  switch (length & 3) {
    case 3:
      h ^= s.charCodeAt(length4 + 2) << 16;
    // falls through
    case 2:
      h ^= s.charCodeAt(length4 + 1) << 8;
    // falls through
    case 1:
      h ^= s.charCodeAt(length4);
      h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** murmur2 of a message key as KafkaJS hashes it: a Buffer's bytes, else `String(key)` in UTF-8. */
export function murmur2(key: unknown): number {
  if (Buffer.isBuffer(key)) return murmur2Bytes(key);
  const s = String(key);
  return murmur2Ascii(s) ?? murmur2Bytes(utf8.encode(s));
}

/**
 * The partitioner: a message's own partition, else murmur2 of its key modulo the partition count
 * (as KafkaJS's DefaultPartitioner and Java's client), else round robin over the partitions that
 * have a leader from a random start.
 */
export const createKeyPartitioner: ICustomPartitioner = () => {
  const counters = new Map<string, number>();
  return ({ topic, partitionMetadata, message }: PartitionerArgs): number => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    const numPartitions = partitionMetadata.length;
    if (message.key !== null && message.key !== undefined) {
      return (murmur2(message.key) & 0x7fffffff) % numPartitions;
    }
    const counter = (counters.get(topic) ?? crypto.getRandomValues(new Uint32Array(1))[0]!) + 1;
    counters.set(topic, counter);
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    if (available.length > 0) {
      return available[(counter & 0x7fffffff) % available.length]!.partitionId;
    }
    return (counter & 0x7fffffff) % numPartitions; // none has a leader: as KafkaJS, any one
  };
};
