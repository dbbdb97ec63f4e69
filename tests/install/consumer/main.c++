// Two deltasync nodes in one process on 127.0.0.1 (ephemeral ports), the second seeded with the
// first: two map entries put on the first (in one batch), and a presence tracked there, must reach the second. Exits 0 when it does, 1 (with what
// the second node saw) when it does not within the deadline, 2 on an exception.
//
// Polls with a generous deadline instead of sleeping a fixed time: a loaded CI machine may be
// slow, never wrong.
#include <deltasync/node.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <exception>
#include <string>
#include <thread>

int main() {
  using Clock = std::chrono::steady_clock;
  try {
    deltasync::NodeConfig config;
    config.listen = "127.0.0.1:0";
    config.cluster = "install-test";
    config.secret = deltasync::Secret(std::string(40, 'i'));
    config.tuning.gossipIntervalMs = 50;

    deltasync::Node first(config);
    config.seeds = {first.address()};
    deltasync::Node second(config);
    std::printf("consumer: node %llu on %s, node %llu on %s\n", static_cast<unsigned long long>(first.id()),
                first.address().c_str(), static_cast<unsigned long long>(second.id()), second.address().c_str());

    auto greetings = first.map<std::string, std::string>("greetings");
    auto mine = first.map<std::string, int64_t>("scores");  // a typed map: codecs in the headers
    first.batch([&] {  // both writes as one unit
      greetings.put("hello", "world");
      mine.put("alice", -7);
    });
    // The library's own error types cross its boundary: a key its peers would refuse is refused
    // here, by type.
    try {
      first.map<std::string, std::string>("greetings").put(std::string(config.limits.maxKeyBytes + 1, 'k'), "v");
      std::fprintf(stderr, "consumer: FAILED: a key over Limits::maxKeyBytes was accepted\n");
      return 1;
    } catch (const deltasync::LimitExceeded& e) {
      std::printf("consumer: refused as expected: %s\n", e.what());
    }
    auto conn = first.presence().connect();
    const deltasync::PresenceRef ref = conn.track("lobby", "alice", R"({"status":"online"})");
    auto seen = second.map<std::string, std::string>("greetings");
    auto scores = second.map<std::string, int64_t>("scores");
    auto presence = second.presence();
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::seconds(60);
    for (;;) {
      auto metas = presence.get("lobby", "alice");
      if (auto value = seen.get("hello"); value && *value == "world" && metas.size() == 1 && metas[0].ref == ref &&
                                          scores.get("alice") == std::optional<int64_t>(-7)) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
        std::printf("consumer: the second node saw hello=world, alice=-7 and alice's presence (ref %s) after %lld ms\n",
                    ref.text().c_str(), static_cast<long long>(ms));
        return 0;
      }
      if (Clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::fprintf(stderr, "consumer: FAILED: the second node did not see hello=world, alice=-7 and alice within 60 s; it has "
                         "%zu entries, %zu presences in lobby and knows %zu members\n",
                 seen.size(), presence.count("lobby"), second.members().size());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: FAILED: %s\n", e.what());
    return 2;
  }
}
