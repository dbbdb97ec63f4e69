#include "crdt/hlc.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <vector>

#include "crdt/errors.h"
#include "tests/support/property.h"

namespace deltasync::crdt {
namespace {

constexpr uint64_t kEpoch2026 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z in milliseconds
constexpr uint64_t kSkew = 50;

// Kulkarni et al.'s algorithm verbatim (Fig. 5 of the paper), with an unbounded logical counter
// c: the specification HybridLogicalClock must match while c fits in 16 bits.
struct ReferenceHlc {
  uint64_t l = 0;
  uint64_t c = 0;

  void send(uint64_t pt) {
    uint64_t old = l;
    l = std::max(old, pt);
    c = (l == old) ? c + 1 : 0;
  }
  void receive(uint64_t lm, uint64_t cm, uint64_t pt) {
    uint64_t old = l;
    l = std::max({old, lm, pt});
    if (l == old && l == lm) {
      c = std::max(c, cm) + 1;
    } else if (l == old) {
      c = c + 1;
    } else if (l == lm) {
      c = cm + 1;
    } else {
      c = 0;
    }
  }
};

// One step: physical time moves by `drift` ms (backwards, stalled or forwards), then the clock
// either stamps a local event or receives a remote timestamp `remoteOffset` ms from physical time
// (beyond kSkew ahead it must be rejected) with logical counter `remoteLogical`.
struct Step {
  int64_t drift = 0;
  bool receive = false;
  int64_t remoteOffset = 0;
  uint64_t remoteLogical = 0;
};

void showValue(const Step& s, std::ostream& os) {
  os << "drift " << s.drift << "ms, ";
  if (s.receive) {
    os << "receive (pt" << (s.remoteOffset < 0 ? "" : "+") << s.remoteOffset << ", "
       << s.remoteLogical << ")";
  } else {
    os << "now";
  }
}

rc::Gen<Step> genStep(rc::Gen<uint64_t> genLogical) {
  return rc::gen::apply(
      [](int64_t drift, bool receive, int64_t offset, uint64_t logical) {
        return Step{drift, receive, offset, logical};
      },
      rc::gen::weightedOneOf<int64_t>({{3, rc::gen::just<int64_t>(0)},
                                       {6, rc::gen::inRange<int64_t>(-3, 6)},
                                       {1, rc::gen::inRange<int64_t>(-2000, 2000)}}),
      rc::gen::arbitrary<bool>(), rc::gen::inRange<int64_t>(-80, 2 * kSkew + 1), genLogical);
}

TEST_CASE("HybridLogicalClock: matches Kulkarni et al.'s algorithm") {
  PROPERTY("packed timestamps equal the paper's (l, c); skewed remotes rejected, clock unchanged",
           [] {
             auto steps =
                 *rc::gen::container<std::vector<Step>>(genStep(rc::gen::inRange<uint64_t>(0, 4)));
             HybridLogicalClock clock(kSkew);
             ReferenceHlc ref;
             uint64_t pt = kEpoch2026;
             for (const Step& s : steps) {
               pt = uint64_t(int64_t(pt) + s.drift);
               if (!s.receive) {
                 Timestamp t = clock.now(pt);
                 ref.send(pt);
                 RC_ASSERT(ref.c <= Timestamp::kMaxLogical);  // short runs never carry
                 RC_ASSERT(t == Timestamp::make(ref.l, ref.c));
                 continue;
               }
               Timestamp remote =
                   Timestamp::make(uint64_t(int64_t(pt) + s.remoteOffset), s.remoteLogical);
               if (s.remoteOffset > int64_t(kSkew)) {
                 const Timestamp before = clock.last();
                 try {
                   clock.update(remote, pt);
                   RC_FAIL("a remote timestamp beyond the tolerated skew was accepted");
                 } catch (const ClockSkewError& e) {
                   RC_ASSERT(e.remote() == remote);
                   RC_ASSERT(e.physicalMillis() == pt);
                   RC_ASSERT(e.maxForwardSkewMillis() == kSkew);
                 }
                 RC_ASSERT(clock.last() == before);
                 continue;
               }
               Timestamp t = clock.update(remote, pt);
               ref.receive(remote.physical(), remote.logical(), pt);
               RC_ASSERT(ref.c <= Timestamp::kMaxLogical);
               RC_ASSERT(t == Timestamp::make(ref.l, ref.c));
             }
           });
}

TEST_CASE("HybridLogicalClock: monotonic, ahead of what it received, close to physical time") {
  // Remote logical counters are often nearly full here, so that carries into the physical part
  // happen; the paper's algorithm no longer applies then, but these invariants still must.
  PROPERTY("invariants with carries", [] {
    auto steps = *rc::gen::container<std::vector<Step>>(genStep(rc::gen::weightedOneOf<uint64_t>({
        {1, rc::gen::inRange<uint64_t>(0, 4)},
        {1, rc::gen::inRange<uint64_t>(Timestamp::kMaxLogical - 3, Timestamp::kMaxLogical + 1)},
    })));
    HybridLogicalClock clock(kSkew);
    uint64_t pt = kEpoch2026;
    std::optional<Timestamp> previous;
    uint64_t highest = 0;  // greatest physical time seen: ours or an accepted remote's
    uint64_t maxPt = 0;
    for (const Step& s : steps) {
      pt = uint64_t(int64_t(pt) + s.drift);
      maxPt = std::max(maxPt, pt);
      highest = std::max(highest, pt);
      Timestamp t;
      if (s.receive) {
        Timestamp remote = Timestamp::make(uint64_t(int64_t(pt) + s.remoteOffset), s.remoteLogical);
        if (s.remoteOffset > int64_t(kSkew)) {
          RC_ASSERT_THROWS_AS(clock.update(remote, pt), ClockSkewError);
          continue;
        }
        t = clock.update(remote, pt);
        RC_ASSERT(t > remote);
        highest = std::max(highest, remote.physical());
      } else {
        t = clock.now(pt);
      }
      RC_ASSERT(t == clock.last());
      if (previous.has_value()) RC_ASSERT(t > *previous);
      RC_ASSERT(t >= Timestamp::make(pt, 0));
      // Fewer than 65536 events: at most one carry past the greatest physical time seen.
      RC_ASSERT(t.physical() <= highest + 1);
      RC_ASSERT(t.physical() <= maxPt + kSkew + 1);
      previous = t;
    }
  });
}

TEST_CASE("Timestamp: packs (physical, logical) and orders lexicographically") {
  PROPERTY("make/physical/logical round trip; order matches (physical, logical)", [] {
    auto p1 = *rc::gen::inRange<uint64_t>(0, Timestamp::kMaxPhysical + 1);
    auto l1 = *rc::gen::inRange<uint64_t>(0, Timestamp::kMaxLogical + 1);
    auto p2 = *rc::gen::element(p1, p1 + 1, p1 / 2, uint64_t{0}, Timestamp::kMaxPhysical);
    auto l2 = *rc::gen::inRange<uint64_t>(0, Timestamp::kMaxLogical + 1);
    p2 = std::min(p2, Timestamp::kMaxPhysical);
    Timestamp a = Timestamp::make(p1, l1), b = Timestamp::make(p2, l2);
    RC_ASSERT(a.physical() == p1);
    RC_ASSERT(a.logical() == l1);
    RC_ASSERT(Timestamp{a.value} == a);
    RC_ASSERT((a < b) == (std::pair(p1, l1) < std::pair(p2, l2)));
    RC_ASSERT((a == b) == (std::pair(p1, l1) == std::pair(p2, l2)));
  });
  CHECK(Timestamp{} < Timestamp::make(0, 1));
  CHECK(Timestamp::make(0, 0) == Timestamp{});
  CHECK(Timestamp::make(5, Timestamp::kMaxLogical).value + 1 == Timestamp::make(6, 0).value);
  CHECK(Timestamp::make(Timestamp::kMaxPhysical, Timestamp::kMaxLogical).value ==
        std::numeric_limits<uint64_t>::max());
  CHECK_THROWS_AS(Timestamp::make(Timestamp::kMaxPhysical + 1, 0), std::invalid_argument);
  CHECK_THROWS_AS(Timestamp::make(0, Timestamp::kMaxLogical + 1), std::invalid_argument);
}

TEST_CASE("HybridLogicalClock: strictly increasing when physical time stalls or goes back") {
  HybridLogicalClock clock;
  CHECK(clock.last() == Timestamp{});
  CHECK(clock.now(2000) == Timestamp::make(2000, 0));
  CHECK(clock.now(2000) == Timestamp::make(2000, 1));
  CHECK(clock.now(1000) == Timestamp::make(2000, 2));  // time went backwards
  CHECK(clock.now(2001) == Timestamp::make(2001, 0));
  CHECK(clock.last() == Timestamp::make(2001, 0));
  // Physical time 0 still gives a timestamp above Timestamp{}.
  HybridLogicalClock zero;
  CHECK(zero.now(0) == Timestamp::make(0, 1));
}

TEST_CASE("HybridLogicalClock: a full logical counter carries into the physical part") {
  HybridLogicalClock clock(HybridLogicalClock::kDefaultMaxForwardSkewMillis,
                           Timestamp::make(1000, Timestamp::kMaxLogical));
  CHECK(clock.now(1000) == Timestamp::make(1001, 0));
  CHECK(clock.now(1000) == Timestamp::make(1001, 1));
  CHECK(clock.now(1001) == Timestamp::make(1001, 2));

  // 70000 events in one millisecond.
  HybridLogicalClock busy;
  Timestamp previous;
  for (int k = 0; k < 70000; ++k) {
    Timestamp t = busy.now(1000);
    REQUIRE(t > previous);
    previous = t;
  }
  CHECK(previous == Timestamp::make(1001, 69999 - 65536));

  // Receiving a remote timestamp whose counter is full.
  HybridLogicalClock receiver;
  CHECK(receiver.update(Timestamp::make(1000, Timestamp::kMaxLogical), 1000) ==
        Timestamp::make(1001, 0));
}

TEST_CASE("HybridLogicalClock: update moves past the remote timestamp and the clock's own") {
  HybridLogicalClock clock(kSkew);
  clock.now(1000);                                                                  // (1000, 0)
  CHECK(clock.update(Timestamp::make(1030, 7), 1000) == Timestamp::make(1030, 8));  // remote ahead
  CHECK(clock.update(Timestamp::make(900, 3), 1001) == Timestamp::make(1030, 9));   // remote behind
  CHECK(clock.update(Timestamp::make(1030, 20), 1002) == Timestamp::make(1030, 21));
  CHECK(clock.update(Timestamp::make(1040, 0), 1040) == Timestamp::make(1040, 1));
  CHECK(clock.update(Timestamp::make(1000, 0), 1100) == Timestamp::make(1100, 0));  // physical
  CHECK(clock.now(1100) == Timestamp::make(1100, 1));
}

TEST_CASE("HybridLogicalClock: remote timestamps beyond the tolerated skew are rejected") {
  HybridLogicalClock clock;
  CHECK(clock.maxForwardSkewMillis() == 60'000);
  CHECK(HybridLogicalClock::kDefaultMaxForwardSkewMillis == 60'000);
  const uint64_t pt = kEpoch2026;
  clock.now(pt);
  const Timestamp before = clock.last();

  const Timestamp tooFar = Timestamp::make(pt + 60'001, 0);
  try {
    clock.update(tooFar, pt);
    FAIL("expected ClockSkewError");
  } catch (const ClockSkewError& e) {
    CHECK(e.remote() == tooFar);
    CHECK(e.physicalMillis() == pt);
    CHECK(e.maxForwardSkewMillis() == 60'000);
    CHECK(std::string(e.what()).find("60001ms ahead") != std::string::npos);
  }
  CHECK(clock.last() == before);
  CHECK_THROWS_AS(clock.update(Timestamp{std::numeric_limits<uint64_t>::max()}, pt),
                  std::runtime_error);
  CHECK(clock.last() == before);

  // Exactly at the limit is accepted, also with a full logical counter.
  const Timestamp atLimit = Timestamp::make(pt + 60'000, Timestamp::kMaxLogical);
  CHECK(clock.update(atLimit, pt) == Timestamp::make(pt + 60'001, 0));

  // A tolerance of UINT64_MAX means "no limit" and does not overflow.
  HybridLogicalClock lax(std::numeric_limits<uint64_t>::max());
  CHECK(lax.update(Timestamp::make(Timestamp::kMaxPhysical, 0), 0) ==
        Timestamp::make(Timestamp::kMaxPhysical, 1));
  // A tolerance of 0 accepts nothing from the future.
  HybridLogicalClock strict(0);
  CHECK_THROWS_AS(strict.update(Timestamp::make(1001, 0), 1000), ClockSkewError);
  CHECK(strict.update(Timestamp::make(1000, 5), 1000) == Timestamp::make(1000, 6));
}

TEST_CASE("HybridLogicalClock: bad physical time and exhaustion leave the clock unchanged") {
  HybridLogicalClock clock;
  clock.now(1000);
  const Timestamp before = clock.last();
  CHECK_THROWS_AS(clock.now(Timestamp::kMaxPhysical + 1), std::invalid_argument);
  CHECK_THROWS_AS(clock.update(Timestamp::make(1000, 0), Timestamp::kMaxPhysical + 1),
                  std::invalid_argument);
  CHECK(clock.last() == before);

  const Timestamp top{std::numeric_limits<uint64_t>::max()};
  HybridLogicalClock exhausted(kSkew, top);
  CHECK_THROWS_AS(exhausted.now(1000), LimitError);
  CHECK_THROWS_AS(exhausted.update(Timestamp::make(1000, 0), 1000), LimitError);
  CHECK(exhausted.last() == top);

  HybridLogicalClock fresh;
  CHECK_THROWS_AS(fresh.update(top, Timestamp::kMaxPhysical), LimitError);
  CHECK(fresh.last() == Timestamp{});
}

TEST_CASE("HybridLogicalClock: a restarted clock resumes after its persisted timestamp") {
  const Timestamp persisted = Timestamp::make(kEpoch2026 + 5000, 3);
  HybridLogicalClock clock(kSkew, persisted);
  CHECK(clock.last() == persisted);
  CHECK(clock.maxForwardSkewMillis() == kSkew);
  // Physical time went back 5 s across the restart: timestamps still increase.
  CHECK(clock.now(kEpoch2026) == Timestamp::make(kEpoch2026 + 5000, 4));
}

}  // namespace
}  // namespace deltasync::crdt
