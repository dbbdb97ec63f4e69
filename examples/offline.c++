// offline: an app-embedded node used offline across restarts, then syncing with its cluster.
//
// A field app keeps its notes in a deltasync node with a data directory. It is opened and
// closed twice with no network at all, taking writes each time (every write is on disk when
// put() returns: sync durability). Meanwhile the office (another node, here in this process on
// 127.0.0.1) takes writes of its own. The app is opened a third time with the office as its
// seed: both sides end with every note. The app's replica id is the same every time.
//
//   examples/offline [--dir DIR]   (default: a new directory under the system's temporary one)
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <deltasync/log.h>
#include <deltasync/node.h>

using namespace deltasync;

namespace {

NodeConfig base() {
  NodeConfig c;
  c.listen = "127.0.0.1:0";
  c.secret = Secret("an example secret of at least thirty-two bytes");  // use a file in real life
  c.tuning.gossipIntervalMs = 50;
  return c;
}

void print(const char* title, Node& node) {
  std::printf("  %-28s replica %-20llu", title, static_cast<unsigned long long>(node.id()));
  for (const auto& [k, v] : node.map<std::string, std::string>("notes").entries()) std::printf(" %s=%s", k.c_str(), v.c_str());
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: offline [--dir DIR]\n");
      return 2;
    }
  }
  const bool temporary = dir.empty();
  if (temporary) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "deltasync-offline-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
  }
  log::setLevel(log::Level::warn);
  try {
    Node office(base());
    office.map<std::string, std::string>("notes").put("office", "price list v2");

    NodeConfig app = base();
    app.dataDir = dir;  // no seeds: offline
    {
      Node n(app);
      n.map<std::string, std::string>("notes").put("site-1", "pump replaced");
      print("app, first run (offline):", n);
    }
    {
      Node n(app);
      n.map<std::string, std::string>("notes").put("site-2", "valve leaking");
      print("app, reopened (offline):", n);
    }
    office.map<std::string, std::string>("notes").put("office-2", "visit site-2 friday");
    app.seeds = {office.address()};
    Node n(app);
    print("app, online again:", n);
    auto mine = n.map<std::string, std::string>("notes");
    auto theirs = office.map<std::string, std::string>("notes");
    const auto start = std::chrono::steady_clock::now();
    while (mine.entries().size() != 4 || theirs.entries() != mine.entries()) {
      if (std::chrono::steady_clock::now() - start > std::chrono::seconds(30)) {
        std::fprintf(stderr, "offline: no convergence within 30 s\n");
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    print("app, synced:", n);
    print("office, synced:", office);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "offline: %s\n", e.what());
    return 1;
  }
  if (temporary) std::filesystem::remove_all(dir);
  std::printf("offline: both sides hold all 4 notes\n");
  return 0;
}
