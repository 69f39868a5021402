#include "bench/report.h"

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"

namespace sbx::bench {

Series MakeSeries(std::string name, std::string unit, std::vector<double> samples) {
  Series s;
  s.name = std::move(name);
  s.unit = std::move(unit);
  s.summary = Summarize(samples);
  s.samples = std::move(samples);
  return s;
}

Row Row::Unmeasured(std::string key, std::string what, std::string goal, std::string note) {
  Row row(std::move(key), std::move(what));
  row.goal = std::move(goal);
  row.met = "n/a";
  row.note = std::move(note);
  return row;
}

void CheckTail(Row& row) {
  if (!row.latency || !row.value) return;
  if (row.value->summary.p99 > 3 * row.value->summary.median) row.met += " (p99>3x)";
}

namespace {

std::string Fmt(double v, const std::string& unit) {
  if (unit == "ms") return absl::StrFormat(v < 10 ? "%.3f ms" : "%.1f ms", v);
  if (unit == "MB/s") return absl::StrFormat("%.0f MB/s", v);
  if (unit == "KiB") return absl::StrFormat("%.0f KiB", v);
  if (unit == "s") return absl::StrFormat("%.2f s", v);
  return absl::StrFormat("%.1f %s", v, unit);
}

nlohmann::json SeriesJson(const Series& s) {
  return {{"name", s.name},
          {"unit", s.unit},
          {"n", s.summary.n},
          {"median", s.summary.median},
          {"p99", s.summary.p99},
          {"min", s.summary.min},
          {"max", s.summary.max},
          {"mean", s.summary.mean},
          {"samples", s.samples}};
}

}  // namespace

void PrintTable(const std::vector<Row>& rows, const std::string& header) {
  std::printf("\n%s\n", header.c_str());
  const char* fmt = "%-46s %11s %11s %11s %12s %7s  %-24s %s\n";
  std::printf(fmt, "what", "median", "p99", "min", "baseline", "ratio", "goal", "met?");
  std::printf("%s\n", std::string(150, '-').c_str());
  for (const Row& r : rows) {
    std::string median = "-", p99 = "-", min = "-", base = "-", ratio = "-";
    if (r.value) {
      const Summary& s = r.value->summary;
      median = Fmt(s.median, r.value->unit);
      // A tail percentile only means something for latencies; for a rate
      // the worst (lowest) run is shown as min.
      if (s.n > 1 && r.value->unit == "ms") p99 = Fmt(s.p99, r.value->unit);
      if (s.n > 1) min = Fmt(s.min, r.value->unit);
    } else {
      median = "n/a";
    }
    if (r.baseline) base = Fmt(r.baseline->summary.median, r.baseline->unit);
    if (r.ratio) ratio = absl::StrFormat("%.2fx", *r.ratio);
    std::printf(fmt, r.what.c_str(), median.c_str(), p99.c_str(), min.c_str(), base.c_str(),
                ratio.c_str(), r.goal.c_str(), r.met.c_str());
  }
  bool any_note = false;
  for (const Row& r : rows) {
    if (r.note.empty()) continue;
    if (!any_note) std::printf("\nnotes:\n");
    any_note = true;
    std::printf("  %-32s %s\n", (r.key + ":").c_str(), r.note.c_str());
  }
  std::fflush(stdout);
}

bool WriteJson(const std::vector<Row>& rows, const std::string& meta_json,
               const std::string& path) {
  nlohmann::json out;
  out["meta"] = nlohmann::json::parse(meta_json);
  out["rows"] = nlohmann::json::array();
  for (const Row& r : rows) {
    nlohmann::json j = {{"key", r.key}, {"what", r.what}, {"goal", r.goal},
                        {"met", r.met}, {"note", r.note}};
    j["value"] = r.value ? SeriesJson(*r.value) : nlohmann::json(nullptr);
    j["baseline"] = r.baseline ? SeriesJson(*r.baseline) : nlohmann::json(nullptr);
    j["ratio"] = r.ratio ? nlohmann::json(*r.ratio) : nlohmann::json(nullptr);
    out["rows"].push_back(std::move(j));
  }
  std::ofstream file(path);
  file << out.dump(1) << "\n";
  return static_cast<bool>(file);
}

}  // namespace sbx::bench
