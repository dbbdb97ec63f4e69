// Operations on a node's named objects, run by a writer holding the node's unique state lock
// (any thread; lib/runtime.h "State lock"): the one place that turns "add x
// to set s" into a CRDT mutation for both the handles (include/deltasync/node.h) and `deltasync ctl`
// (lib/control.h), and renders an object as text.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <deltasync/limits.h>

#include "crdt/hlc.h"
#include "gossip/object.h"
#include "gossip/store.h"

namespace deltasync {

class Runtime;

namespace objects {

// Timestamps for last-writer-wins writes: a hybrid logical clock over the wall clock, and never
// below the stamp the write replaces, so a put always wins over the value this node saw (even
// when the writer of that value had a clock ahead of ours, within the HLC's skew bound).
class Clock {
 public:
  crdt::Timestamp after(crdt::Timestamp replaced);

 private:
  crdt::HybridLogicalClock hlc_;
};

// Every write below first holds what it writes to the rules peers enforce on it (gossip/limits.h:
// the object name, the element or key, the value) and throws LimitExceeded (nothing applied)
// when it breaks one: peers refuse a push with such a write in it, and with it every later write
// of this node. checkName() is that rule for a name alone (handles check it when they are made);
// it also refuses names starting with '$' (std::invalid_argument): those are deltasync's own
// (gossip/presence.h), written only by their owners.
void checkName(const Limits& limits, const std::string& name);

// A PN-counter: by > 0 increments, by < 0 decrements.
void increment(Runtime& rt, const std::string& name, int64_t by);
// An OR-set element.
void add(Runtime& rt, const std::string& name, const std::string& element);
void remove(Runtime& rt, const std::string& name, const std::string& element);
// An AW-LWW-map entry.
void put(Runtime& rt, Clock& clock, const std::string& name, const std::string& key, const std::string& value);
void removeKey(Runtime& rt, const std::string& name, const std::string& key);
// A last-writer-wins register's value (stamped after the one it replaces here, as put).
void setRegister(Runtime& rt, Clock& clock, const std::string& name, const std::string& value);
// A multi-value register: write supersedes every value seen here (concurrent ones survive);
// clear removes them all as seen here.
void writeMulti(Runtime& rt, const std::string& name, const std::string& value);
void clearMulti(Runtime& rt, const std::string& name);
// An enable-wins flag (an enable concurrent with a disable wins).
void setFlag(Runtime& rt, const std::string& name, bool on);
// A map of maps (the or-map): an entry of the inner map at `key`; remove takes one entry out of
// it, removeNested the whole inner map as seen here (concurrent puts into it survive).
void nestedPut(Runtime& rt, Clock& clock, const std::string& name, const std::string& key, const std::string& inner,
               const std::string& value);
void nestedRemove(Runtime& rt, const std::string& name, const std::string& key, const std::string& inner);
void nestedRemoveKey(Runtime& rt, const std::string& name, const std::string& key);
// A map of sets: an element of the set at `key`; removeSet takes the whole set as seen here
// (concurrent adds into it survive).
void setsAdd(Runtime& rt, const std::string& name, const std::string& key, const std::string& element);
void setsRemove(Runtime& rt, const std::string& name, const std::string& key, const std::string& element);
void setsRemoveKey(Runtime& rt, const std::string& name, const std::string& key);
// A map of counters: the counter at `key` goes up by `by` (down when by < 0); removeKey resets it
// as seen here (counts made concurrently survive, crdt/counter-map.h).
void countersAdd(Runtime& rt, const std::string& name, const std::string& key, int64_t by);
void countersRemoveKey(Runtime& rt, const std::string& name, const std::string& key);
// A set element or a map key, whichever kind `name` has; std::invalid_argument for other kinds
// or an absent name.
void removeAny(Runtime& rt, const std::string& name, const std::string& item);

// One local write as a value: what the handles and batches hand to apply() (lib/node.c++). It
// points at the caller's strings; a batch keeps its own copies.
struct Write {
  enum class Op : uint8_t {
    increment,        // by
    add,              // key: the element
    remove,           // key: the element
    put,              // key, value
    removeKey,        // key
    setRegister,      // value
    writeMulti,       // value
    clearMulti,
    setFlag,          // on
    nestedPut,        // key, inner, value
    nestedRemove,     // key, inner
    nestedRemoveKey,  // key
    setsAdd,          // key, inner: the element
    setsRemove,       // key, inner: the element
    setsRemoveKey,    // key
    countersAdd,      // key, by
    countersRemoveKey,  // key
    erase,
  };
  Op op;
  const std::string* name;
  const std::string* key = nullptr;
  const std::string* inner = nullptr;
  const std::string* value = nullptr;
  int64_t by = 0;
  bool on = false;
};
// Holds w to the limits (LimitExceeded; std::invalid_argument for a '$' name), as apply() does
// before it changes anything.
void check(const Limits& limits, const Write& w);
// The kind of object w writes (gossip::Value's index); gossip::kTombstoneKind for erase (any).
size_t kindOf(const Write& w);
// The write, by the functions above (the caller holds the unique state lock).
void apply(Runtime& rt, Clock& clock, const Write& w);

// Deletes the object for good, cluster-wide, whatever its kind (gossip/object.h, Tombstone): it
// reads as absent, and writes to it throw ObjectDeleted, here and on every node it reaches.
// Deleting an absent name retires it all the same.
void erase(Runtime& rt, const std::string& name);

// How `deltasync ctl` writes and reads typed values (--type, --key-type): the text a person types
// as the bytes a typed handle reads (include/deltasync/codec.h), and back. The types: string
// (the text itself), bytes (hex digits), int (int64_t), uint (uint64_t), double, bool
// (true/false). fromText throws std::invalid_argument for text that is not one; toText throws
// CodecError for bytes that are not one.
struct TextType {
  const char* name;
  std::string (*fromText)(const std::string& text);
  std::string (*toText)(const std::string& bytes);
};
// The type called `name` ("" is string); std::invalid_argument naming the types otherwise.
const TextType& textType(const std::string& name);

// The object as text lines: a counter's value; a set's elements; a map's "key=value" entries;
// a register's value(s); a flag's "true"/"false"; an or-map's "key.field=value" entries; a map of
// sets' "key.element" lines; a map of counters' "key=value" lines; nothing for a deleted object. Map keys (and an or-map's fields) are
// shown as `keys`, set elements and
// values as `values`; lines are in the order of the stored bytes of what they list (for the
// built-in types, the values' order). CodecError for bytes that are not of the type.
std::vector<std::string> render(const gossip::Value& value, const TextType& keys = textType("string"),
                                const TextType& values = textType("string"));

// The objects an application sees (by name; deltasync's own "$..." objects and deleted ones left
// out): what
// Node::objects() and `deltasync ctl objects` list. Under the shared state lock.
std::vector<std::pair<std::string, const gossip::Value*>> listed(const gossip::ObjectStore& store);

}  // namespace objects
}  // namespace deltasync
