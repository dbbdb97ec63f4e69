// A model-checking driver for causal CRDTs: n replicas run random operations; every operation's
// delta (paired with the same operation applied to a simple specification, the Model) is sent to
// every other replica over a network that loses, duplicates and reorders messages; replicas
// also send joined delta groups and whole states. After every step each replica must agree with
// its model (check); at the end a full exchange must make every replica equal, and equal to the
// model of everything that happened.
//
// Model requirements: default-constructible bottom, merge(const Model&) (a join on the model).
// The op callback runs one random mutator at replica r and returns {delta, model delta}; it must
// merge the model delta into models[r] itself (the model's own "apply").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "tests/support/property.h"

namespace deltasync::testing {

// The specification every add-wins causal type reduces to, free of dots and contexts: writes
// are events with a payload; a replica knows some events and knows some of them removed. A write
// or remove "observes" the live events it supersedes. Presence and winners are then computed
// from the live (known, not removed) events.
template <typename Payload>
struct EventModel {
  std::map<uint64_t, Payload> known;
  std::set<uint64_t> removed;

  void merge(const EventModel& o) {
    known.insert(o.known.begin(), o.known.end());
    removed.insert(o.removed.begin(), o.removed.end());
  }
  template <typename F>
  void forEachLive(F&& f) const {
    for (auto& [ev, p] : known) {
      if (!removed.count(ev)) f(ev, p);
    }
  }
  // The model delta of removing (superseding) every live event matching pred; merged here too.
  template <typename Pred>
  EventModel observe(Pred&& pred) {
    EventModel m;
    forEachLive([&](uint64_t ev, const Payload& p) {
      if (pred(p)) {
        m.known.emplace(ev, p);
        m.removed.insert(ev);
      }
    });
    merge(m);
    return m;
  }
  // A write: supersedes the live events matching pred and adds a new one; merged here too.
  template <typename Pred>
  EventModel write(Pred&& pred, Payload p) {
    static uint64_t nextEvent = 0;
    EventModel m = observe(pred);
    m.known.emplace(++nextEvent, std::move(p));
    merge(m);
    return m;
  }
};

template <typename T, typename Model>
struct ModelSim {
  using OpFn = std::function<std::pair<T, Model>(T& replica, Model& model, size_t r)>;
  using CheckFn = std::function<void(const T& replica, const Model& model)>;

  static void run(OpFn op, CheckFn check, int maxSteps = 80) {
    struct Message {
      size_t to;
      T delta;
      Model model;
    };
    const size_t n = *rc::gen::inRange<size_t>(2, 5);
    std::vector<T> reps(n);
    std::vector<Model> models(n);
    std::vector<T> group(n);  // deltas buffered since the last group send
    std::vector<Model> groupModel(n);
    std::vector<Message> net;
    auto send = [&](size_t from, const T& d, const Model& m) {
      for (size_t j = 0; j < n; ++j) {
        if (j != from) net.push_back(Message{j, d, m});
      }
    };
    const int steps = *rc::gen::inRange(0, maxSteps);
    for (int s = 0; s < steps; ++s) {
      const int action = *rc::gen::inRange(0, 10);
      const size_t r = *rc::gen::inRange<size_t>(0, n);
      if (action <= 4) {
        auto [d, m] = op(reps[r], models[r], r);
        send(r, d, m);
        group[r].join(d);
        groupModel[r].merge(m);
      } else if (action <= 7 && !net.empty()) {  // deliver, sometimes keeping a duplicate
        size_t i = *rc::gen::inRange<size_t>(0, net.size());
        Message msg = net[i];
        if (!*rc::gen::arbitrary<bool>()) net.erase(net.begin() + i);
        reps[msg.to].join(msg.delta);
        models[msg.to].merge(msg.model);
      } else if (action == 8 && !net.empty()) {  // lose one
        net.erase(net.begin() + *rc::gen::inRange<size_t>(0, net.size()));
      } else if (action == 9) {
        if (*rc::gen::arbitrary<bool>()) {
          send(r, group[r], groupModel[r]);
          group[r] = T();
          groupModel[r] = Model();
        } else {
          send(r, reps[r], models[r]);
        }
      }
      for (size_t j = 0; j < n; ++j) {
        RC_ASSERT(reps[j].context().valid());
        check(reps[j], models[j]);
      }
    }
    std::vector<T> snapshot = reps;
    for (size_t j = 0; j < n; ++j) {
      for (size_t k = 0; k < n; ++k) reps[j].join(snapshot[k]);
    }
    Model all;
    for (auto& m : models) all.merge(m);
    for (size_t j = 0; j < n; ++j) {
      RC_ASSERT(reps[j] == reps[0]);
      check(reps[j], all);
    }
  }
};

}  // namespace deltasync::testing
