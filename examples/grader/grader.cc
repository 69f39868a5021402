// An example grader on the sbx SDK.
//
// The problem: read two integers, print their sum. Every solution in
// solutions/ (C, C++ and Python; accepted, wrong, too slow, too hungry,
// crashing, printing too much) is sent to sbxd as one Run: its source, the
// compile command, and the test cases with their limits. The daemon compiles
// once, runs every case in a fresh sandbox it destroys after, and returns a
// verdict per case. The grader prints a table and exits 1 if any verdict is
// not the one the solution's name promises.
//
//   sbx-grader [--server ADDR] [--solutions DIR]
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "sbx/client.h"
#include "sbx/proto_time.h"
#include "sbx/units.h"

namespace {

struct Language {
  const char* name;
  const char* extension;
  std::vector<std::string> compile;  // empty: interpreted
  std::vector<std::string> run;
};

const std::vector<Language>& Languages() {
  static const std::vector<Language> languages = {
      {"C", ".c", {"gcc", "-O2", "-o", "solution", "solution.c"}, {"./solution"}},
      {"C++", ".cc", {"g++", "-O2", "-o", "solution", "solution.cc"}, {"./solution"}},
      {"Python", ".py", {}, {"python3", "solution.py"}},
  };
  return languages;
}

// Each solution's name says what it should get.
struct Expectation {
  const char* solution;
  sbx::v1::Verdict verdict;
};

const std::vector<Expectation>& Expectations() {
  static const std::vector<Expectation> expectations = {
      {"accepted", sbx::v1::VERDICT_OK},
      {"wrong", sbx::v1::VERDICT_WRONG_ANSWER},
      {"slow", sbx::v1::VERDICT_TIME_LIMIT},
      {"hungry", sbx::v1::VERDICT_MEMORY_LIMIT},
      {"crash", sbx::v1::VERDICT_SIGNALED},
      {"chatty", sbx::v1::VERDICT_OUTPUT_LIMIT},
  };
  return expectations;
}

struct Test {
  const char* input;
  const char* answer;
};

const std::vector<Test>& Tests() {
  static const std::vector<Test> tests = {
      {"1 2\n", "3\n"},
      {"-5 5\n", "0\n"},
      {"2000000000 2000000000\n", "4000000000\n"},
  };
  return tests;
}

// The problem's limits, for every case.
sbx::v1::ExecLimits CaseLimits() {
  sbx::v1::ExecLimits limits;
  *limits.mutable_cpu_time() = sbx::ToProtoDuration(absl::Seconds(1));
  *limits.mutable_wall_time() = sbx::ToProtoDuration(absl::Seconds(3));
  limits.set_memory_bytes(256 << 20);
  limits.set_output_bytes(1 << 20);
  return limits;
}

std::string VerdictName(sbx::v1::Verdict verdict) {
  std::string name = sbx::v1::Verdict_Name(verdict);
  return name.rfind("VERDICT_", 0) == 0 ? name.substr(8) : name;
}

bool ReadWhole(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream content;
  content << in.rdbuf();
  *out = content.str();
  return true;
}

sbx::v1::RunRequest MakeRequest(const Language& language, const std::string& source) {
  sbx::v1::RunRequest request;
  sbx::v1::File* file = request.add_files();
  file->set_path(std::string("solution") + language.extension);
  file->set_content(source);
  for (const std::string& arg : language.compile) request.add_compile_argv(arg);
  for (const std::string& arg : language.run) request.add_run_argv(arg);
  request.set_compare(sbx::v1::COMPARE_MODE_IGNORE_TRAILING_WHITESPACE);
  for (const Test& test : Tests()) {
    sbx::v1::TestCase* c = request.add_cases();
    c->set_stdin(test.input);
    c->set_expected_stdout(test.answer);
    *c->mutable_limits() = CaseLimits();
  }
  return request;
}

int Usage() {
  std::cerr << "usage: sbx-grader [--server ADDR] [--solutions DIR]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string server = sbx::DefaultAddress();
  std::string solutions = SBX_GRADER_SOLUTIONS_DIR;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--server" || arg == "--solutions") && i + 1 < argc) {
      (arg == "--server" ? server : solutions) = argv[++i];
    } else {
      return Usage();
    }
  }
  absl::StatusOr<sbx::Client> client = sbx::Client::Connect(server);
  if (!client.ok()) {
    std::cerr << "sbx-grader: " << client.status().message() << "\n";
    return 2;
  }

  std::cout << absl::StrFormat("%-8s %-9s %-14s %-14s %8s %9s  %s\n", "language", "solution",
                               "expected", "verdict", "max cpu", "max mem", "");
  int mismatches = 0;
  for (const Language& language : Languages()) {
    for (const Expectation& expected : Expectations()) {
      const std::string path =
          solutions + "/" + expected.solution + std::string(language.extension);
      std::string source;
      if (!ReadWhole(path, &source)) {
        std::cerr << "sbx-grader: cannot read " << path << "\n";
        return 2;
      }
      absl::StatusOr<sbx::v1::RunResponse> run = client->Run(MakeRequest(language, source));
      if (!run.ok()) {
        std::cerr << "sbx-grader: " << path << ": " << run.status().ToString() << "\n";
        return 2;
      }
      absl::Duration max_cpu = absl::ZeroDuration();
      int64_t max_memory = 0;
      for (const sbx::v1::CaseResult& c : run->cases()) {
        max_cpu = std::max(max_cpu, sbx::FromProtoDuration(c.exit().cpu_time()));
        max_memory = std::max<int64_t>(max_memory, c.exit().memory_peak_bytes());
      }
      const bool ok = run->verdict() == expected.verdict;
      if (!ok) ++mismatches;
      std::cout << absl::StrFormat(
          "%-8s %-9s %-14s %-14s %7.3fs %9s  %s\n", language.name, expected.solution,
          VerdictName(expected.verdict), VerdictName(run->verdict()),
          absl::ToDoubleSeconds(max_cpu), sbx::FormatSize(max_memory), ok ? "ok" : "MISMATCH");
      if (!ok && run->verdict() == sbx::v1::VERDICT_COMPILE_ERROR) {
        std::cout << run->compile().stderr() << "\n";
      }
    }
  }
  std::cout << (mismatches == 0 ? "all verdicts as expected\n"
                                : absl::StrFormat("%d verdict(s) differ\n", mismatches));
  return mismatches == 0 ? 0 : 1;
}
