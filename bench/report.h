// The rows of the result table, printed as text and written as JSON.
#ifndef SBX_BENCH_REPORT_H_
#define SBX_BENCH_REPORT_H_

#include <optional>
#include <string>
#include <vector>

#include "bench/stats.h"

namespace sbx::bench {

// A measured series: its summary plus the raw samples (kept in the JSON for
// plots of the distributions).
struct Series {
  std::string name;
  std::string unit;  // "ms", "MB/s", "KiB", "s", "checks"
  Summary summary;
  std::vector<double> samples;
};

Series MakeSeries(std::string name, std::string unit, std::vector<double> samples);

struct Row {
  Row() = default;
  Row(std::string key_, std::string what_) : key(std::move(key_)), what(std::move(what_)) {}
  // A row with no figure, e.g. not implemented or failed; `note` says why.
  static Row Unmeasured(std::string key, std::string what, std::string goal, std::string note);

  std::string key;   // stable JSON key, e.g. "oneshot"
  std::string what;  // the table's first column
  std::optional<Series> value;     // absent: not measured (see note)
  std::optional<Series> baseline;  // the one the ratio is taken against
  std::optional<double> ratio;     // value median / baseline median
  std::string goal;                // from issue 5, as text; "" = none
  std::string met;                 // "yes", "no", "n/a" or ""
  std::string note;                // shown under the table
  bool latency = false;            // p99 <= 3x median is a goal too
};

// Fills in `met` for the p99 <= 3x median goal of latency rows: appends
// " (p99>3x)" when it fails.
void CheckTail(Row& row);

void PrintTable(const std::vector<Row>& rows, const std::string& header);
// Writes {"meta": ..., "rows": [...]} to `path`. Returns false on I/O error.
bool WriteJson(const std::vector<Row>& rows, const std::string& meta_json,
               const std::string& path);

}  // namespace sbx::bench

#endif  // SBX_BENCH_REPORT_H_
