# deltasync wire schema: every byte that crosses between peers.
#
# Rules: field and enumerant numbers (@N) are never renumbered or reused; new fields are added
# with new numbers. Everything received is untrusted: gossip/codec validates sizes, counts,
# nesting and CRDT invariants before anything is applied (limits: gossip/limits.h).
#
# Compact encodings. Bulk columns are Data blobs in a documented byte format rather than
# List(struct), because fixed-width struct lists cost 8-16 bytes per element while the columns
# below cost 1-3. Notation:
#   varint  unsigned LEB128 (7 bits per byte, low groups first, at most 10 bytes)
#   zigzag  signed -> unsigned: (n << 1) ^ (n >> 63), then varint
# A column must be consumed exactly: trailing bytes are an error, as is a truncated value.

@0x8a3e2dc8b29ed5d8;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("deltasync::wire");

# ---------------------------------------------------------------------------------------------
# Causal contexts

struct CausalContext {
  origins @0 :List(Origin);
  # Sorted by strictly increasing replica id; no origin without intervals.

  struct Origin {
    replica @0 :UInt64;
    runs @1 :Data;
    # The origin's intervals of dot counters, ascending, as varint pairs (gap, span):
    # first interval lo = gap + 1; later ones lo = previous hi + 2 + gap (so intervals can never
    # touch or overlap: the canonical form); hi = lo + span. Every hi <= 2^48 - 1.
    # A replica's contiguous history 1..n is the two bytes-or-so "0, n-1".
  }
}

# ---------------------------------------------------------------------------------------------
# Dot stores (ORSet, AWLWWMap, MVRegister, EWFlag) as columns

enum ScalarKind {
  none @0;    # no payload (set elements' values, flags, registers' keys)
  int64 @1;   # keys: zigzag delta from the previous entry's key; values: zigzag
  text @2;    # UTF-8 not enforced (keys are bytes to the CRDT). Keys: front-coded against the
              # previous key: varint shared-prefix length, varint suffix length, suffix bytes.
              # Values: varint length, bytes.
  bytes @3;   # as text
}

struct DotStore {
  count @0 :UInt32;
  # Number of entries; every column holds exactly this many values.

  writers @1 :List(UInt64);
  # Distinct replica ids of the entries' dots, strictly increasing.

  dots @2 :Data;
  # Per entry: varint index into writers, then zigzag (counter - previous counter of that same
  # writer in this column, starting from 0). Counters in 1..2^48-1; no dot twice.

  keyKind @3 :ScalarKind;
  keys @4 :Data;
  valueKind @5 :ScalarKind;
  values @6 :Data;

  timestamps @7 :Data;
  # AWLWWMap only (empty otherwise): per entry, zigzag (timestamp - previous entry's timestamp).
}

struct CausalState {
  # A causal CRDT's state or delta: every dot of the store lies in the context.
  store @0 :DotStore;
  context @1 :CausalContext;
}

# ---------------------------------------------------------------------------------------------
# Observed-remove maps of nested causal CRDTs: one context for the whole tree

struct NestedStore {
  union {
    dotStore @0 :DotStore;
    orMap @1 :ORMapStore;
  }
}

struct ORMapStore {
  keyKind @0 :ScalarKind;
  keys @1 :Data;
  # One key per value, in the keys-column format of keyKind; no key twice.
  values @2 :List(NestedStore);
  # Non-empty stores; no dot appears in two of them.
}

struct ORMapState {
  store @0 :ORMapStore;
  context @1 :CausalContext;
}

# ---------------------------------------------------------------------------------------------
# Counters and registers

struct GCounter {
  entries @0 :List(Entry);
  # Strictly increasing replica ids, counts > 0.
  struct Entry {
    replica @0 :UInt64;
    count @1 :UInt64;
  }
}

struct PNCounter {
  entries @0 :List(Entry);
  # Strictly increasing replica ids; not both counts 0.
  struct Entry {
    replica @0 :UInt64;
    increments @1 :UInt64;
    decrements @2 :UInt64;
  }
}

struct LWWRegister {
  # Bottom when hasValue is false (then the other fields are ignored).
  hasValue @0 :Bool;
  timestamp @1 :UInt64;
  writer @2 :UInt64;
  valueKind @3 :ScalarKind;
  value @4 :Data;
  # The value in the values-column format of valueKind (one value).
}

# ---------------------------------------------------------------------------------------------
# Replicated objects and gossip envelopes (used by the gossip engine and the node runtime)

struct CounterMapState {
  # crdt/counter-map.h: per key, every writer's totals and the floors removals recorded.
  slots @0 :List(Slot);
  # Strictly increasing keys (byte order), at most limits.maxEntries, each at most
  # limits.maxKeyBytes.
  struct Slot {
    key @0 :Data;
    totals @1 :PNCounter;
    # Not empty.
    floors @2 :PNCounter;
    # Per writer and half, at most its totals (a writer without totals has no floor).
  }
}

struct Crdt {
  # A value in the column encoding. Since protocol version 8 no message carries it (pushes and
  # state chunks carry compact values, gossip/compact.h); lib/storage reads it from rows written
  # before (storage format 2 and older).
  union {
    gCounter @0 :GCounter;
    pnCounter @1 :PNCounter;
    lwwRegister @2 :LWWRegister;
    mvRegister @3 :CausalState;
    ewFlag @4 :CausalState;
    orSet @5 :CausalState;
    awLwwMap @6 :CausalState;
    orMap @7 :ORMapState;
    compact @8 :Data;
    # Retired in protocol version 8 (refused): the value arm of the struct push. Pushes travel in
    # Envelope.compact, their values in gossip/compact.h's format (every kind has one since
    # version 8), as state chunks do.
    deleted @9 :Void;
    # The object was deleted: a tombstone, final (gossip/object.h). Since protocol version 5.
    orMapOfSets @10 :ORMapState;
    # A map of add-wins sets (the nested stores are the sets' dot stores). Since protocol
    # version 6.
    mapOfCounters @11 :CounterMapState;
    # A map of counters whose key removal resets what it observed (crdt/counter-map.h). Since
    # protocol version 7.
  }
}

struct Object {
  name @0 :Text;
  # The object's name in the node's replicated map (at most limits.maxNameBytes).
  value @1 :Crdt;
}

struct DeltaPush {
  # Almeida et al. Algorithm 2: the delta-interval D[fromSeq..toSeq) of the sender's delta log
  # (minus what came from the receiver, BP), joined per object.
  sender @0 :UInt64;
  fromSeq @1 :UInt64;
  toSeq @2 :UInt64;
  objects @3 :List(Object);
  # At most one entry per name.
  base @4 :UInt64;
  # The sender's record of the receiver's last ack (base <= fromSeq < toSeq): the receiver is
  # known to hold everything of the sender's log below base, so it may count [fromSeq, toSeq)
  # as contiguous when fromSeq <= max(base, what it has already received).
  partial @5 :Bool;
  # The answer to a Request (lazy push): it leaves out the store entries of the Offer for
  # [fromSeq, toSeq) that were not requested. The receiver acks it only once it holds every
  # dot of that offer, and not at all when it answers an offer the receiver no longer tracks
  # (the sender offers again after its retransmission timeout).
}

struct Ack {
  sender @0 :UInt64;
  seq @1 :UInt64;
  # The receiver has joined everything of the sender's log below seq.
}

struct SyncRequest {
  sender @0 :UInt64;
  id @1 :UInt64;
  # A read that waits for its peers (ReadFrom, since protocol version 6): the receiver answers
  # with a SyncReply and sends its log to the sender now. Only neighbours answer (they are the
  # ones that send the sender their log).
}

struct SyncReply {
  sender @0 :UInt64;
  id @1 :UInt64;
  # The request's.
  seq @2 :UInt64;
  # The replier's log end when it answered: once the requester has joined everything of the
  # replier's log below seq (and acked it), it holds all the replier held then. 0: the replier
  # knows the requester holds its whole log already.
}

struct DotSummary {
  # Store dots of one object (the entries' own dots, not removal context). (Offers and requests
  # travel compact only: the compact envelope below spells each origin's id as a marker byte,
  # 0 for the sender, or 1 and the 8-byte id.)
  name @0 :Text;
  dots @1 :Data;
  # A set of dots, compact (a CausalContext costs ~24 bytes per origin, this ~11): per origin,
  # in strictly increasing replica order: the replica id as 8 bytes little-endian (nonzero),
  # varint n >= 1 (at most limits.maxIntervalsPerOrigin), then n (gap, span) varint pairs as in
  # CausalContext.Origin.runs. At most limits.maxOrigins origins; never empty.
}

struct Offer {
  # Lazy push, step 1: the store dots of the delta-interval D[fromSeq..toSeq) (minus BP, minus
  # dots the receiver is known to hold). The receiver answers with a Request for the dots it
  # lacks and has not already asked another peer for; entries without dots (counters,
  # registers, removals) are not announced and always travel in the push.
  sender @0 :UInt64;
  fromSeq @1 :UInt64;
  toSeq @2 :UInt64;
  # fromSeq < toSeq.
  objects @3 :List(DotSummary);
  # Strictly increasing names.
  base @4 :UInt64;
  # As in DeltaPush: the sender's record of the receiver's last ack; base <= fromSeq.
  complete @5 :Bool;
  # The interval holds nothing but the announced entries (and entries the receiver is known to
  # hold): no removal or superseded context, no counters or registers. A receiver that wants
  # none of the dots then acks (as for the push) instead of requesting.
}

struct Request {
  # Lazy push, step 2: the offered dots the receiver wants. The offerer answers with the
  # DeltaPush of [fromSeq, toSeq) holding only those store entries (and every removal and
  # non-dot value of the interval). The requester acks that push once it holds every offered
  # dot, whoever delivered it.
  sender @0 :UInt64;
  fromSeq @1 :UInt64;
  toSeq @2 :UInt64;
  # Those of the Offer answered; fromSeq < toSeq.
  objects @3 :List(DotSummary);
  # Strictly increasing names; may be empty (nothing wanted).
}

struct Digest {
  # Catch-up for a peer whose ack is below the sender's garbage-collected log: per-object
  # content hashes of the sender's state at sequence seq. The receiver asks (StateRequest) for
  # the objects that differ, or acks seq when none does.
  sender @0 :UInt64;
  entries @1 :List(Entry);
  # Strictly increasing names.
  struct Entry {
    name @0 :Text;
    hash @1 :UInt64;
  }
  seq @2 :UInt64;
}

struct StateRequest {
  # Reply to a Digest: the names whose state differs; the sender of the digest answers with
  # StateChunks (transfer = seq).
  sender @0 :UInt64;
  seq @1 :UInt64;
  names @2 :List(Text);
  # Strictly increasing.
}

enum Compression {
  none @0;
  zlib @1;
}

struct StateChunk {
  # One bounded piece of a state transfer; chunks decode and join independently.
  sender @0 :UInt64;
  transfer @1 :UInt64;
  # The sequence number of the Digest this transfer answers; the receiver acks it once all
  # `total` chunks have arrived.
  index @2 :UInt32;
  total @3 :UInt32;
  compression @4 :Compression;
  payload @5 :Data;
  # The chunk's objects, compressed as stated: varint n, then n x (name, varint length, compact
  # value), as in the compact push (Envelope.compact; references 0 = the sender). Since protocol
  # version 8; before, a framed ObjectList.
}

struct ObjectList {
  # Retired in protocol version 8 (state chunks carry compact values).
  objects @0 :List(Object);
}

# ---------------------------------------------------------------------------------------------
# Membership and failure detection (SWIM with suspicion, incarnations and piggybacked updates)

enum MemberState {
  alive @0;
  suspect @1;
  down @2;
  # Declared dead by the failure detector (may come back with a higher incarnation).
  left @3;
  # Left voluntarily or removed by an operator.
}

struct MemberUpdate {
  replica @0 :UInt64;
  incarnation @1 :UInt64;
  state @2 :MemberState;
  address @3 :Text;
  # Where the member listens (host:port); empty inside the simulator. At most 255 bytes.
  reporter @4 :UInt64;
  # suspect / down: the member whose failed probe raised it (0 otherwise). Suspicions from
  # distinct reporters are the independent confirmations that shorten the suspicion timeout.
}

struct Ping {
  sender @0 :UInt64;
  seq @1 :UInt64;
  updates @2 :List(MemberUpdate);
  # Piggybacked membership updates (at most limits.maxMemberUpdates).
  tableHash @3 :UInt64;
  # Order-independent hash of the ids the sender holds alive or suspect (itself included); a
  # receiver whose hash differs answers with a sample of its table (push-pull sync).
  outView @4 :Bool;
  # The receiver is in the sender's out-view: the receiver adds the sender to its in-view.
}

struct PingReq {
  # Ask the receiver to probe `target` on the sender's behalf (SWIM indirect probe).
  sender @0 :UInt64;
  seq @1 :UInt64;
  target @2 :UInt64;
  updates @3 :List(MemberUpdate);
}

struct PingAck {
  sender @0 :UInt64;
  seq @1 :UInt64;
  # 0: not an answer (a flood of down/left updates, or the pull half of a sync).
  target @2 :UInt64;
  # The member that answered (the sender itself for a direct ping, else the probed target).
  updates @3 :List(MemberUpdate);
  tableHash @4 :UInt64;
  sample @5 :List(MemberUpdate);
  # Table sync: live members of the sender's table (at most limits.maxMemberUpdates), applied
  # but not re-gossiped.
}

# ---------------------------------------------------------------------------------------------
# Authentication handshake (mutual HMAC-SHA256 challenge-response over the cluster secret)
#
#   client -> server  Hello        {replica, cluster, nonce_c}
#   server -> client  HelloReply   {replica, nonce_s, proof_s = HMAC(secret, "ds-auth-v1 server"
#                                   || nonce_c || nonce_s || id_s || id_c)}
#   client -> server  AuthProof    {proof_c = HMAC(secret, "ds-auth-v1 client" || nonce_s
#                                   || nonce_c || id_c || id_s)}
# Nonces and proofs are exactly 32 bytes. Only after verifying proof_c does the server hand out
# the replication capability, bound to id_c.

struct Hello {
  replica @0 :UInt64;
  cluster @1 :Text;
  # The cluster's name (at most 255 bytes): peers of another cluster are refused early.
  nonce @2 :Data;
  protocolVersion @3 :UInt32;
  client @4 :Bool;
  # A control client (deltasync ctl), not a replica: both proofs then use the labels
  # "ds-auth-v1 ctl-server" / "ds-auth-v1 ctl-client" over the node's client secret (its cluster
  # secret when it has none), and what it is handed serves the control interface only.
}

struct HelloReply {
  replica @0 :UInt64;
  nonce @1 :Data;
  proof @2 :Data;
}

struct AuthProof {
  proof @0 :Data;
}

# ---------------------------------------------------------------------------------------------
# One message between peers

struct Envelope {
  union {
    push @0 :DeltaPush;
    ack @1 :Ack;
    digest @2 :Digest;
    stateRequest @3 :StateRequest;
    stateChunk @4 :StateChunk;
    ping @5 :Ping;
    pingReq @6 :PingReq;
    pingAck @7 :PingAck;
    hello @8 :Hello;
    helloReply @9 :HelloReply;
    authProof @10 :AuthProof;
    offer @11 :Offer;
    request @12 :Request;
    compact @13 :Data;
    # A push, ack, offer or request as one byte string: the messages of every gossip round,
    # at about half the size of their structs. They travel only so: their struct arms above
    # (push @0, ack @1, offer @11, request @12) are refused by receivers (one decoder per rule;
    # the push's since protocol version 8, when every kind got a compact form); the structs stay
    # in the schema because field numbers are never reused, and document the meaning of each
    # field. Format (varint and zigzag as above; names are varint length + bytes, with the rules
    # of object names):
    #   u8 kind (0 push, 1 ack, 11 offer, 12 request: the tags above; bit 7 set: every
    #      byte after this one is raw deflate, RFC 1951, of the bytes described below, inflated
    #      no further than Limits.maxMessageBytes), 8-byte sender (LE)
    #   push     u8 flags (bit 0: partial), varint base, varint fromSeq - base,
    #            varint toSeq - fromSeq (>= 1), varint n, n x (name, varint length,
    #            compact value: gossip/compact.h's format, references 0 = the sender)
    #   ack      varint seq
    #   offer    u8 flags (bit 0: complete), the three sequence varints as for a push,
    #            varint n, n x (name, varint length, dots: DotSummary.dots' format except
    #            that each origin's id is a byte, 0 = the sender, or 1 and the 8-byte id)
    #   request  varint fromSeq, varint 0, varint toSeq - fromSeq (>= 1), then as an offer
    # Every field means what it means in the struct of the same kind, with the same rules.
    syncRequest @14 :SyncRequest;
    syncReply @15 :SyncReply;
  }
}

# ---------------------------------------------------------------------------------------------
# RPC: how peers reach each other (gossip/rpc.h)
#
# A node's bootstrap capability is its Gatekeeper: the only thing an unauthenticated connection
# can call. hello() answers with the server's proof and a Handshake for this connection; the
# client proves itself through it and only then receives a Replicator, bound to the replica id
# it authenticated as. Every Envelope delivered through that Replicator is validated
# (gossip/envelope.h) and must name that id as its sender.

interface Gatekeeper {
  hello @0 (hello :Hello) -> (reply :HelloReply, handshake :Handshake);
  attach @1 () -> (replicator :Replicator);
  # For connections under mutual TLS (lib/tls.h): the client's certificate already proved its
  # replica id, so it gets a Replicator bound to that id without the HMAC handshake. Fails on
  # a connection without a verified client certificate.
}

interface Handshake {
  prove @0 (proof :AuthProof) -> (replicator :Replicator);
}

interface Replicator {
  deliver @0 (envelope :Envelope) -> (replies :List(Envelope));
  # Fails (a remote exception naming the problem) when the envelope is invalid; nothing of it is
  # applied then, and the connection stays usable.
  # replies: messages the receiver holds for the caller while its own connection to the caller
  # is down (a one-way network: the caller reaches it, it cannot reach the caller). The caller
  # takes them as delivered by the receiver, held to the same rules as a deliver() to it.

  control @1 () -> (control :Control);
  # The node's administration interface (lib/control.h; `deltasync ctl`), for the same
  # authenticated peer. Fails when the node does not serve one.
}

# ---------------------------------------------------------------------------------------------
# Administration: what `deltasync ctl` calls (lib/control.h). Values travel as text: a counter as
# its decimal value, a set as its elements, a map as "key=value" lines, sorted.

interface Control {
  # Typed values (ctl --type, --key-type): keyType is how map keys (and an or-map's fields) are
  # spelled, valueType how set elements, map values and register values are; "" or "string": as
  # they are; "bytes": hex; "int", "uint", "double", "bool": as lib/objects.h TextType says. The
  # node turns the text into the bytes a typed handle reads (include/deltasync/codec.h) and back.
  get @0 (name :Text, keyType :Text, valueType :Text) -> (kind :Text, lines :List(Text));
  # kind is "" when the object does not exist here (yet).
  put @1 (name :Text, key :Text, value :Text, keyType :Text, valueType :Text);
  # A map entry (the map is created if absent).
  add @2 (name :Text, element :Text, valueType :Text);
  # A set element (the set is created if absent).
  remove @3 (name :Text, element :Text, keyType :Text, valueType :Text);
  # A set element (of valueType) or a map key (of keyType), whichever `name` is.
  incr @4 (name :Text, by :Int64, key :Text, keyType :Text);
  # A counter (created if absent); a negative `by` decrements. With a key: the counter at that key
  # (of keyType) of a map of counters.
  members @5 () -> (members :List(Member));
  stats @6 () -> (text :Text);
  # The node's metrics, as Prometheus text.
  watch @7 (name :Text, watcher :Watcher, keyType :Text, valueType :Text) -> (subscription :Subscription);
  # Calls watcher.changed() with the object's lines now and after every (coalesced) change,
  # until the subscription is dropped or a call to the watcher fails.
  presence @8 (what :Text, topic :Text) -> (lines :List(Text));
  # The presence tracker as text: what = "list" (a topic's presences: "key ref previous meta"
  # lines), "topics" ("topic count" lines) or "replicas" ("id status since presences" lines).
  hold @9 (topic :Text, key :Text, meta :Text) -> (ref :Text, subscription :Subscription);
  # Tracks a presence on a connection of its own for as long as the subscription is held: when
  # it is dropped (the client exits, or its connection breaks), the presence leaves.
  objects @10 () -> (lines :List(Text));
  # The objects the node holds, "name kind" lines sorted by name (deltasync's own "$..." left out).
  confirm @11 (peers :UInt32, majority :Bool, timeoutMs :UInt64) -> (reached :Bool, heldBy :UInt32, wanted :UInt32);
  # Waits until everything the node has written or received so far is durable and held by
  # `peers` other replicas (or a majority of the live members), or `timeoutMs` has passed:
  # deltasync::WriteTo for the writes a client just made (ctl --wait).
  seeds @12 (op :Text, address :Text) -> (changed :Bool, seeds :List(Text));
  # op "list": the addresses the node dials as seeds; "add" / "remove" change them first
  # (deltasync::Node::addSeed / removeSeed; changed: whether it did). An address that is not
  # HOST:PORT, or another op, fails saying so.
  deleteObject @13 (name :Text);
  # Deletes the object for good, cluster-wide (deltasync::Node::deleteObject).
  setRegister @14 (name :Text, value :Text, valueType :Text);
  # A last-writer-wins register's value (created if absent).
  setFlag @15 (name :Text, on :Bool);
  # Enables or disables an enable-wins flag (created if absent).
  sync @16 (peers :UInt32, majority :Bool, timeoutMs :UInt64) -> (reached :Bool, syncedWith :UInt32, wanted :UInt32);
  # Waits until the node holds everything `peers` of its neighbours (or a majority of the live
  # members) held when it was called, or `timeoutMs` has passed: deltasync::Node::sync, before a
  # read (ctl get --sync).

  struct Member {
    id @0 :UInt64;
    address @1 :Text;
    state @2 :Text;
    incarnation @3 :UInt64;
  }
}

interface Watcher {
  changed @0 (kind :Text, lines :List(Text)) -> ();
}

interface Subscription {}
