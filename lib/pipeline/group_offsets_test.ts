import assert from "node:assert/strict";
import { type GroupOffset, GroupOffsetMirror } from "./group_offsets.ts";

/** A mirror whose commits are recorded; `release()` lets the request in flight finish. */
function recordingMirror(stored = new Map<number, bigint>()) {
  const requests: string[][] = [];
  let release = () => {};
  const mirror = new GroupOffsetMirror({
    topic: "t",
    commit: (offsets: GroupOffset[]) => {
      requests.push(offsets.map((o) => `${o.partition}@${o.offset}`));
      return new Promise<void>((resolve) => (release = resolve));
    },
    readStored: () => Promise.resolve(stored),
  });
  return { mirror, requests, release: () => release() };
}

Deno.test("GroupOffsetMirror commits one request at a time, newest offset per partition, held partitions only", async () => {
  const { mirror, requests, release } = recordingMirror();
  mirror.assigned([0, 1]);
  mirror.stored(0, 10n);
  mirror.stored(2, 99n); // not ours
  await Promise.resolve();
  await Promise.resolve();
  assert.deepEqual(requests, [["0@10"]]);
  mirror.stored(0, 20n);
  mirror.stored(1, 5n);
  mirror.stored(0, 15n); // older than what is queued: dropped
  assert.equal(requests.length, 1, "a second request while the first is in flight");
  release();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(requests[1], ["0@20", "1@5"]);
  release();
  await mirror.flush();
});

Deno.test("GroupOffsetMirror commits PostgreSQL's stored offsets on assignment, and drops others' queued ones", async () => {
  const { mirror, requests, release } = recordingMirror(new Map([[0, 0n], [1, 7n], [2, 3n]]));
  mirror.assigned([0, 1]);
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(requests, [["0@0", "1@7"]]);
  mirror.stored(1, 9n);
  mirror.assigned([0]); // partition 1 moved to another member before its commit went out
  release();
  await new Promise((r) => setTimeout(r, 0));
  release();
  await mirror.flush();
  assert.deepEqual(requests.slice(1), [["0@0"]]);
});

Deno.test("GroupOffsetMirror follows a reloaded offset back (the database lost commits), then forward again", async () => {
  const { mirror, requests, release } = recordingMirror(new Map([[0, 10n]]));
  mirror.assigned([0, 1]);
  await new Promise((r) => setTimeout(r, 0));
  mirror.stored(0, 40n);
  release();
  await new Promise((r) => setTimeout(r, 0));
  mirror.reloading(0)(25n); // the database stores less than was mirrored
  mirror.reloading(2)(1n); // not ours
  release();
  await new Promise((r) => setTimeout(r, 0));
  mirror.stored(0, 30n); // read again and stored: forward from the reloaded offset
  mirror.reloading(1)(0n); // nothing stored: the log start
  release();
  await new Promise((r) => setTimeout(r, 0));
  release();
  await mirror.flush();
  assert.deepEqual(requests, [["0@10"], ["0@40"], ["0@25"], ["0@30", "1@0"]]);
});

Deno.test("GroupOffsetMirror: an offset stored while a load read is newer than the read, which may then only move forward", async () => {
  const { mirror, requests, release } = recordingMirror(new Map([[0, 10n]]));
  mirror.assigned([0]);
  await new Promise((r) => setTimeout(r, 0));
  const found = mirror.reloading(0); // the load reads 10
  mirror.stored(0, 50n); // meanwhile a write stores 50
  found(10n);
  release();
  await new Promise((r) => setTimeout(r, 0));
  release();
  await mirror.flush();
  assert.deepEqual(requests, [["0@10"], ["0@50"]]);
});
