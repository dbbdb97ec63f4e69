// What an application reads from an object store, for tests that compare stores by content:
// each object's elements, entries and counter values, with replica ids and dots left out. Objects
// whose names start with '$' (the library's own) and objects with nothing to read are left out
// (pruning may remove one that held nothing but the pruned replica's context: gossip/pruning.h).
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gossip/store.h"

namespace deltasync::testing {

inline std::map<std::string, std::string> reads(const gossip::ObjectStore& s) {
  std::map<std::string, std::string> out;
  auto sorted = [](std::vector<std::string> v, std::string& to) {
    std::sort(v.begin(), v.end());
    for (const auto& x : v) to += x + ",";
  };
  for (const auto& [name, v] : s.objects()) {
    if (name[0] == '$') continue;
    std::string r;
    if (const auto* set = std::get_if<crdt::ORSet<std::string>>(&v)) {
      sorted(set->elements(), r);
    } else if (const auto* map = std::get_if<gossip::Map>(&v)) {
      std::map<std::string, std::string> kv;
      map->forEach([&](std::string_view k, const std::string& val) { kv[std::string(k)] = val; });
      for (const auto& [k, val] : kv) r += k + "=" + val + ",";
    } else if (const auto* c = std::get_if<crdt::PNCounter>(&v)) {
      r = std::to_string(c->value());
    } else if (const auto* g = std::get_if<crdt::GCounter>(&v)) {
      r = std::to_string(g->value());
    } else if (const auto* om = std::get_if<gossip::MapOfSets>(&v)) {
      std::vector<std::string> keys;
      om->forEachKey([&](const std::string& k) { keys.push_back(k); });
      std::sort(keys.begin(), keys.end());
      for (const auto& k : keys) {
        r += k + "{";
        sorted(om->get(k).elements(), r);
        r += "}";
      }
    } else if (const auto* cm = std::get_if<gossip::MapOfCounters>(&v)) {
      for (const auto& [k, n] : cm->entries()) r += k + "=" + std::to_string(n) + ",";
    } else if (const auto* reg = std::get_if<crdt::MVRegister<std::string>>(&v)) {
      sorted(reg->values(), r);
    }
    if (!r.empty()) out[name] = r;
  }
  return out;
}

}  // namespace deltasync::testing
