// The messages peers exchange, as plain C++ values: what the gossip engine and membership
// produce and consume. gossip/envelope.h maps them to and from wire.capnp's Envelope (validating
// on decode); field meanings are documented there, in the schema.
//
// No capnp here: the engine, membership and simulator include this header cheaply.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "crdt/causal-context.h"
#include "crdt/dot.h"
#include "gossip/object.h"

namespace deltasync::gossip {

using crdt::ReplicaId;

struct NamedValue {
  std::string name;
  Value value;
  bool operator==(const NamedValue&) const = default;
};

// An object whose value is encoded already, compact (gossip/compact.h, references 0 standing for
// the sender of the message that carries it): what the engine serves of a large object (its
// catch-up parts, encoded straight from the state's entries, gossip/split.h). Only a sender holds
// these; decoding gives NamedValue.
struct EncodedObject {
  std::string name;
  std::vector<unsigned char> value;
  bool operator==(const EncodedObject&) const = default;
};

struct DeltaPushMsg {
  ReplicaId sender;
  uint64_t base = 0;
  uint64_t fromSeq = 0;
  uint64_t toSeq = 0;
  std::vector<NamedValue> objects;  // names unique
  bool partial = false;             // answers a Request (see wire.capnp)
  bool operator==(const DeltaPushMsg&) const = default;
};

struct AckMsg {
  ReplicaId sender;
  uint64_t seq = 0;
  bool operator==(const AckMsg&) const = default;
};

// Store dots of one object: the entries an offer announces or a request asks for.
struct NamedDots {
  std::string name;
  crdt::CausalContext dots;  // never empty
  bool operator==(const NamedDots&) const = default;
};

struct OfferMsg {
  ReplicaId sender;
  uint64_t fromSeq = 0;
  uint64_t toSeq = 0;
  std::vector<NamedDots> objects;  // strictly increasing names
  uint64_t base = 0;               // <= fromSeq
  bool complete = false;           // nothing in the interval but the announced entries
  bool operator==(const OfferMsg&) const = default;
};

struct RequestMsg {
  ReplicaId sender;
  uint64_t fromSeq = 0;
  uint64_t toSeq = 0;
  std::vector<NamedDots> objects;  // strictly increasing names
  bool operator==(const RequestMsg&) const = default;
};

struct DigestMsg {
  ReplicaId sender;
  uint64_t seq = 0;
  std::vector<std::pair<std::string, uint64_t>> entries;  // strictly increasing names
  bool operator==(const DigestMsg&) const = default;
};

struct StateRequestMsg {
  ReplicaId sender;
  uint64_t seq = 0;
  std::vector<std::string> names;  // strictly increasing
  bool operator==(const StateRequestMsg&) const = default;
};

struct StateChunkMsg {
  ReplicaId sender;
  uint64_t transfer = 0;
  uint32_t index = 0;
  uint32_t total = 0;
  std::vector<NamedValue> objects;  // names unique within the chunk, with those of `encoded`
  // Sent after `objects`, in the same list of the wire (a decoded chunk has them in `objects`).
  std::vector<EncodedObject> encoded;
  bool operator==(const StateChunkMsg&) const = default;
};

// A read that waits for its peers (lib: ReadFrom): "answer with how far your log goes, and send
// it to me now". The reply's seq: once the requester has joined everything of the replier's log
// below it (its Ack), it holds all the replier held when it answered; 0 when the replier knows
// the requester holds all of its log already.
struct SyncRequestMsg {
  ReplicaId sender;
  uint64_t id = 0;  // the requester's, increasing
  bool operator==(const SyncRequestMsg&) const = default;
};

struct SyncReplyMsg {
  ReplicaId sender;
  uint64_t id = 0;  // the request's
  uint64_t seq = 0;
  bool operator==(const SyncReplyMsg&) const = default;
};

enum class MemberState : uint8_t { alive = 0, suspect = 1, down = 2, left = 3 };

// "alive", "suspect", "down", "left": for ctl, metrics and logs.
inline const char* stateName(MemberState s) {
  switch (s) {
    case MemberState::alive: return "alive";
    case MemberState::suspect: return "suspect";
    case MemberState::down: return "down";
    case MemberState::left: return "left";
  }
  return "?";
}

struct MemberUpdate {
  ReplicaId replica;
  uint64_t incarnation = 0;
  MemberState state = MemberState::alive;
  std::string address;
  ReplicaId reporter;  // suspect / down: who raised it; 0 otherwise
  bool operator==(const MemberUpdate&) const = default;
};

struct PingMsg {
  ReplicaId sender;
  uint64_t seq = 0;
  std::vector<MemberUpdate> updates;
  uint64_t tableHash = 0;
  bool outView = false;
  bool operator==(const PingMsg&) const = default;
};

struct PingReqMsg {
  ReplicaId sender;
  uint64_t seq = 0;
  ReplicaId target;
  std::vector<MemberUpdate> updates;
  bool operator==(const PingReqMsg&) const = default;
};

struct PingAckMsg {
  ReplicaId sender;
  uint64_t seq = 0;
  ReplicaId target;
  std::vector<MemberUpdate> updates;
  uint64_t tableHash = 0;
  std::vector<MemberUpdate> sample;
  bool operator==(const PingAckMsg&) const = default;
};

inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;
using Nonce = std::array<uint8_t, kNonceBytes>;
using Proof = std::array<uint8_t, kProofBytes>;

struct HelloMsg {
  ReplicaId replica;
  std::string cluster;
  Nonce nonce{};
  uint32_t protocolVersion = 1;
  bool client = false;  // a control client (gossip/auth.h)
  bool operator==(const HelloMsg&) const = default;
};

struct HelloReplyMsg {
  ReplicaId replica;
  Nonce nonce{};
  Proof proof{};
  bool operator==(const HelloReplyMsg&) const = default;
};

struct AuthProofMsg {
  Proof proof{};
  bool operator==(const AuthProofMsg&) const = default;
};

// Alternatives in the order of wire.capnp's Envelope union (whose `compact` is a form of some of
// them, not a message of its own).
using Message = std::variant<DeltaPushMsg, AckMsg, DigestMsg, StateRequestMsg, StateChunkMsg,
                             PingMsg, PingReqMsg, PingAckMsg, HelloMsg, HelloReplyMsg,
                             AuthProofMsg, OfferMsg, RequestMsg, SyncRequestMsg, SyncReplyMsg>;

// A message a protocol state machine wants sent to peer `to`.
struct Outgoing {
  ReplicaId to;
  Message message;
};

// Ping, PingReq and PingAck: membership's; every other peer message is the engine's.
inline bool isMembershipMessage(const Message& m) {
  return std::holds_alternative<PingMsg>(m) || std::holds_alternative<PingReqMsg>(m) ||
         std::holds_alternative<PingAckMsg>(m);
}

}  // namespace deltasync::gossip
