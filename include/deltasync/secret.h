// deltasync::Secret: the cluster secret that peers prove knowledge of (HMAC-SHA256
// challenge-response) before they may replicate. At least kMinBytes bytes; there is no default.
// A value type that never prints its bytes: it has no stream or fmt formatter, and no error
// message built from it contains them.
#pragma once

#include <cstddef>
#include <string>

#include <deltasync/export.h>

namespace deltasync {

class DELTASYNC_API Secret {
 public:
  static constexpr size_t kMinBytes = 32;

  // std::invalid_argument if shorter than kMinBytes.
  explicit Secret(std::string bytes);
  // Reads the secret from a file (trailing newlines stripped). std::runtime_error if the file
  // cannot be read, std::invalid_argument if its secret is too short.
  static Secret fromFile(const std::string& path);

  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

}  // namespace deltasync
