// Phoenix's JavaScript Presence merge rules (phoenix/assets/js/phoenix/presence.js: syncState,
// syncDiff, list), for the state and diffs that presence-web sends:
//   state = {key: {metas: [{phx_ref, phx_ref_prev?, ...}]}}
//   diff  = {joins: state, leaves: state}
// Unlike Phoenix's static methods these never modify their arguments: each returns a new state.
//
//   let state = {};
//   state = syncState(state, payloadOfPresenceState, onJoin, onLeave);
//   state = syncDiff(state, payloadOfPresenceDiff, onJoin, onLeave);
//   list(state, (key, {metas}) => ({key, count: metas.length}));
//
// onJoin(key, currentPresence, newPresence) / onLeave(key, currentPresence, leftPresence) are
// called as Phoenix calls them: per key, joins first, then leaves; currentPresence is the key's
// entry before the join (undefined for a new key) and after the leave.

const clone = (value) => JSON.parse(JSON.stringify(value));
const refsOf = (presence) => presence.metas.map((m) => m.phx_ref);

// The joins and leaves that turn `currentState` into `newState` (a full state from the server,
// say after a reconnect), applied with syncDiff.
export function syncState(currentState, newState, onJoin, onLeave) {
  const state = clone(currentState);
  const joins = {};
  const leaves = {};
  for (const [key, presence] of Object.entries(state)) {
    if (!Object.hasOwn(newState, key)) leaves[key] = presence;
  }
  for (const [key, newPresence] of Object.entries(newState)) {
    const currentPresence = state[key];
    if (!currentPresence) {
      joins[key] = clone(newPresence);
      continue;
    }
    const newRefs = refsOf(newPresence);
    const curRefs = refsOf(currentPresence);
    const joinedMetas = newPresence.metas.filter((m) => !curRefs.includes(m.phx_ref));
    const leftMetas = currentPresence.metas.filter((m) => !newRefs.includes(m.phx_ref));
    if (joinedMetas.length > 0) joins[key] = {...clone(newPresence), metas: clone(joinedMetas)};
    if (leftMetas.length > 0) leaves[key] = {...clone(currentPresence), metas: clone(leftMetas)};
  }
  return syncDiff(state, {joins, leaves}, onJoin, onLeave);
}

// Applies one diff: a join replaces the key's entry by the joined one, keeping the metas whose refs
// it does not carry (first); a leave removes the metas with its refs, and the key with its last.
export function syncDiff(state, diff, onJoin = () => {}, onLeave = () => {}) {
  const next = clone(state);
  const {joins = {}, leaves = {}} = clone(diff);
  for (const [key, newPresence] of Object.entries(joins)) {
    const currentPresence = next[key];
    next[key] = clone(newPresence);
    if (currentPresence) {
      const joinedRefs = refsOf(next[key]);
      const curMetas = currentPresence.metas.filter((m) => !joinedRefs.includes(m.phx_ref));
      next[key].metas.unshift(...curMetas);
    }
    onJoin(key, currentPresence, newPresence);
  }
  for (const [key, leftPresence] of Object.entries(leaves)) {
    const currentPresence = next[key];
    if (!currentPresence) continue;
    const refsToRemove = refsOf(leftPresence);
    currentPresence.metas = currentPresence.metas.filter((m) => !refsToRemove.includes(m.phx_ref));
    onLeave(key, currentPresence, leftPresence);
    if (currentPresence.metas.length === 0) delete next[key];
  }
  return next;
}

// chooser(key, presence) for each key (default: the presence itself), in key order.
export function list(presences, chooser = (key, presence) => presence) {
  return Object.keys(presences)
    .sort()
    .map((key) => chooser(key, presences[key]));
}
