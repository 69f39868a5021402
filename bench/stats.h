// Samples and their summary (median, p99, min) for the benchmark rows.
#ifndef SBX_BENCH_STATS_H_
#define SBX_BENCH_STATS_H_

#include <chrono>
#include <cstddef>
#include <vector>

namespace sbx::bench {

struct Summary {
  size_t n = 0;
  double median = 0;
  double p99 = 0;  // nearest rank
  double min = 0;
  double max = 0;
  double mean = 0;
};

// REQUIRES: !samples.empty().
Summary Summarize(std::vector<double> samples);

// Milliseconds since `start` on the monotonic clock.
inline double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace sbx::bench

#endif  // SBX_BENCH_STATS_H_
