// What the benchmarks share to report what they measure: one percentile rule, one clock unit,
// one way to read a numeric option.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace deltasync::bench {

// The p-quantile (0 <= p <= 1) of v by the nearest-rank method: the smallest value with at least
// a fraction p of the values at or below it (p = 0: the minimum, 1: the maximum). NaN for none.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double rank = std::ceil(p * static_cast<double>(v.size()));
  const size_t i = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return v[std::min(i, v.size() - 1)];
}

// A steady-clock duration in milliseconds.
template <typename Duration>
double ms(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// The value of option `name` (as "--name N" in argv), or `fallback`.
inline size_t argOr(int argc, char** argv, const char* name, size_t fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtoull(argv[i + 1], nullptr, 10);
  }
  return fallback;
}

}  // namespace deltasync::bench
