// Message <-> an Envelope inside a larger Cap'n Proto message (RPC parameters), with the same
// validation as decodeMessage() (gossip/envelope.h). Pulls in generated capnp code: include it
// only where RPC messages are built or read.
#pragma once

#include "gossip/envelope.h"
#include "gossip/wire.capnp.h"

namespace deltasync::gossip {

void encodeEnvelope(const Message& m, wire::Envelope::Builder out);
// Throws DecodeError (and lets Cap'n Proto's own errors through as kj::Exception).
Message decodeEnvelope(wire::Envelope::Reader in, const Limits& limits);

// The handshake messages alone (RPC parameters in gossip/rpc.h); same rules.
void encodeHello(const HelloMsg& m, wire::Hello::Builder out);
void encodeHelloReply(const HelloReplyMsg& m, wire::HelloReply::Builder out);
void encodeAuthProof(const AuthProofMsg& m, wire::AuthProof::Builder out);
HelloMsg decodeHello(wire::Hello::Reader in, const Limits& limits);
HelloReplyMsg decodeHelloReply(wire::HelloReply::Reader in, const Limits& limits);
AuthProofMsg decodeAuthProof(wire::AuthProof::Reader in, const Limits& limits);

}  // namespace deltasync::gossip
