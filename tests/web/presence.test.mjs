// The page's merge module (examples/presence-web/static/presence.js): Phoenix's syncState,
// syncDiff and list rules, by example and by a seeded random model (the seed is printed; replay
// with PRESENCE_SEED=n).
import {test} from "node:test";
import assert from "node:assert/strict";
import {list, syncDiff, syncState} from "../../examples/presence-web/static/presence.js";

const meta = (ref, extra = {}) => ({phx_ref: ref, ...extra});
const entry = (...metas) => ({metas});

test("syncState from empty joins everything, once per key", () => {
  const joins = [];
  const state = syncState({}, {a: entry(meta("1")), b: entry(meta("2"), meta("3"))}, (key, cur, p) => joins.push([key, cur, p.metas.length]));
  assert.deepEqual(state, {a: entry(meta("1")), b: entry(meta("2"), meta("3"))});
  assert.deepEqual(joins, [["a", undefined, 1], ["b", undefined, 2]]);
});

test("syncState to a new full state reports the joined and left metas only", () => {
  const before = {a: entry(meta("1")), b: entry(meta("2"), meta("3"))};
  const after = {b: entry(meta("3"), meta("4")), c: entry(meta("5"))};
  const joins = {};
  const leaves = {};
  const state = syncState(before, after, (k, c, p) => (joins[k] = p.metas.map((m) => m.phx_ref)),
                          (k, c, p) => (leaves[k] = p.metas.map((m) => m.phx_ref)));
  assert.deepEqual(joins, {b: ["4"], c: ["5"]});
  assert.deepEqual(leaves, {a: ["1"], b: ["2"]});
  assert.deepEqual(Object.keys(state).sort(), ["b", "c"]);
  assert.deepEqual(state.b.metas.map((m) => m.phx_ref).sort(), ["3", "4"]);
  assert.deepEqual(before, {a: entry(meta("1")), b: entry(meta("2"), meta("3"))}, "the argument is not modified");
});

test("syncDiff: an update is a leave of the old ref and a join of the new one, in one diff", () => {
  let state = {alice: entry(meta("1", {status: "online"}), meta("7", {status: "online"}))};
  state = syncDiff(state, {joins: {alice: entry(meta("2", {status: "away", phx_ref_prev: "1"}))}, leaves: {alice: entry(meta("1"))}});
  assert.deepEqual(state.alice.metas.map((m) => [m.phx_ref, m.status]), [["7", "online"], ["2", "away"]]);
});

test("syncDiff: the last meta's leave removes the key; leaves of unknown keys are ignored", () => {
  const left = [];
  let state = {bob: entry(meta("1"))};
  state = syncDiff(state, {joins: {}, leaves: {bob: entry(meta("1")), nobody: entry(meta("9"))}}, undefined,
                   (k, cur) => left.push([k, cur.metas.length]));
  assert.deepEqual(state, {});
  assert.deepEqual(left, [["bob", 0]]);
});

test("syncDiff: a join of a ref already held does not duplicate it", () => {
  let state = {a: entry(meta("1", {status: "x"}))};
  state = syncDiff(state, {joins: {a: entry(meta("1", {status: "y"}))}, leaves: {}});
  assert.deepEqual(state.a.metas, [meta("1", {status: "y"})]);
});

test("list maps each key in key order with the chooser", () => {
  const state = {b: entry(meta("2")), a: entry(meta("1"), meta("3"))};
  assert.deepEqual(list(state, (key, {metas}) => `${key}:${metas.length}`), ["a:2", "b:1"]);
  assert.deepEqual(list(state)[0], entry(meta("1"), meta("3")));
});

// A model of the server: presences (key, ref) tracked, updated (new ref, leave old + join new in
// one diff) and untracked; the diffs between two reads coalesce as deltasync's subscriptions do
// (a join and a leave of one ref in between cancel). Folding the diffs with syncDiff must give
// the model's state; syncState from any earlier state to the final one must too.
function random(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

function view(model) {
  const out = {};
  for (const [ref, {key, status}] of model) (out[key] ??= {metas: []}).metas.push({phx_ref: ref, status});
  for (const key of Object.keys(out)) out[key].metas.sort((x, y) => x.phx_ref.localeCompare(y.phx_ref));
  return out;
}

const canonical = (state) =>
  Object.fromEntries(Object.entries(state).map(([k, v]) => [k, v.metas.map((m) => `${m.phx_ref}:${m.status}`).sort()]));

test("folding the diffs of random histories gives the server's state", () => {
  const seed = Number(process.env.PRESENCE_SEED ?? Date.now() % 1e9);
  console.log(`presence.test: seed ${seed} (replay: PRESENCE_SEED=${seed})`);
  const rand = random(seed);
  for (let round = 0; round < 200; round++) {
    const model = new Map();  // ref -> {key, status}
    let next = 1;
    let folded = {};
    const snapshots = [{}];
    for (let batch = 0; batch < 20; batch++) {
      const joins = new Map();
      const leaves = new Map();
      const join = (ref, v) => joins.set(ref, v);
      const leave = (ref, v) => (joins.has(ref) ? joins.delete(ref) : leaves.set(ref, v));
      for (let op = 0, n = 1 + Math.floor(rand() * 5); op < n; op++) {
        const refs = [...model.keys()];
        const r = rand();
        if (r < 0.4 || refs.length === 0) {
          const ref = String(next++).padStart(6, "0");
          const v = {key: `k${Math.floor(rand() * 4)}`, status: "online"};
          model.set(ref, v);
          join(ref, v);
        } else if (r < 0.7) {
          const old = refs[Math.floor(rand() * refs.length)];
          const v = model.get(old);
          model.delete(old);
          leave(old, v);
          const ref = String(next++).padStart(6, "0");
          const nv = {key: v.key, status: rand() < 0.5 ? "away" : "typing"};
          model.set(ref, nv);
          join(ref, nv);
        } else {
          const old = refs[Math.floor(rand() * refs.length)];
          leave(old, model.get(old));
          model.delete(old);
        }
      }
      folded = syncDiff(folded, {joins: view(joins), leaves: view(leaves)});
      assert.deepEqual(canonical(folded), canonical(view(model)), `seed ${seed} round ${round} batch ${batch}`);
      snapshots.push(folded);
    }
    const from = snapshots[Math.floor(rand() * snapshots.length)];
    assert.deepEqual(canonical(syncState(from, view(model))), canonical(view(model)), `seed ${seed} round ${round}: syncState`);
  }
});
