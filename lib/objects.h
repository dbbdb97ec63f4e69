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

// Single writes by name (the control service; tests), each checked as apply() checks it:
// a PN-counter goes up by `by` (down when by < 0); an OR-set element is added; an AW-LWW-map
// entry is put, and a last-writer-wins register set, stamped after the value it replaces here;
// an enable-wins flag is set; a map of counters' counter at `key` goes up by `by`; an object is
// deleted. Every kind's writes are the Write ops below, through apply().
void increment(Runtime& rt, const std::string& name, int64_t by);
void add(Runtime& rt, const std::string& name, const std::string& element);
void put(Runtime& rt, Clock& clock, const std::string& name, const std::string& key, const std::string& value);
void setRegister(Runtime& rt, Clock& clock, const std::string& name, const std::string& value);
void setFlag(Runtime& rt, const std::string& name, bool on);
void countersAdd(Runtime& rt, const std::string& name, const std::string& key, int64_t by);
void erase(Runtime& rt, const std::string& name);
// A set element or a map key, whichever kind `name` has; std::invalid_argument for other kinds
// or an absent name.
void removeAny(Runtime& rt, const std::string& name, const std::string& item);

// One local write as a value: what the handles and batches hand to apply() (lib/node.c++). It
// points at the caller's strings; a batch keeps its own copies.
struct Write {
  enum class Op : uint8_t {
    increment,          // by: a PN-counter up (by > 0) or down
    add,                // key: an OR-set element
    remove,             // key: the element
    put,                // key, value: an AW-LWW-map entry, stamped after the one it replaces here
    removeKey,          // key
    setRegister,        // value: a last-writer-wins register (stamped as put)
    writeMulti,         // value: a multi-value register; supersedes every value seen here
    clearMulti,         //   (concurrent ones survive); clear removes them all as seen here
    setFlag,            // on: an enable-wins flag
    nestedPut,          // key, inner, value: an entry of the map of maps' inner map at key
    nestedRemove,       // key, inner
    nestedRemoveKey,    // key: the whole inner map as seen here (concurrent puts survive)
    setsAdd,            // key, inner: an element of the map of sets' set at key
    setsRemove,         // key, inner
    setsRemoveKey,      // key: the whole set as seen here (concurrent adds survive)
    countersAdd,        // key, by: the map of counters' counter at key up by `by`
    countersRemoveKey,  // key: resets it as seen here (crdt/counter-map.h)
    erase,              // the object, for good
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
// Checks the write (check()), then makes it (the caller holds the unique state lock).
void apply(Runtime& rt, Clock& clock, const Write& w);
// apply() of a write that was checked already (a batch checks each write as it records it).
void applyChecked(Runtime& rt, Clock& clock, const Write& w);

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
