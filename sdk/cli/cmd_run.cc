// sbx run [--time DUR] [--wall DUR] [--memory SIZE] [--pids N]
//         [--output-limit SIZE] [--json] -- CMD [ARG...]
//
// One command in an ephemeral sandbox, through the daemon's Run: local stdin
// is read to its end first (Run is one unary call), then the command's
// stdout and stderr are written out and its exit code passed through
// (128+N for signal N). --json prints the verdict and figures instead.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "sbx/proto_time.h"
#include "sbx/units.h"

namespace sbx::cli {
namespace {

using nlohmann::json;

// The daemon's own default output limit of a case; also what is returned.
constexpr int64_t kDefaultOutputBytes = 16 << 20;

absl::Status ParsePositiveDuration(const std::string& text, const char* flag,
                                   google::protobuf::Duration* out) {
  if (text.empty()) return absl::OkStatus();
  absl::StatusOr<absl::Duration> d = ParseDuration(text);
  if (!d.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", d.status().message()));
  if (*d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " must be positive"));
  }
  *out = ToProtoDuration(*d);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParsePositiveSize(const std::string& text, const char* flag) {
  absl::StatusOr<int64_t> size = ParseSize(text);
  if (!size.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", size.status().message()));
  if (*size <= 0) return absl::InvalidArgumentError(absl::StrCat(flag, " must be positive"));
  return *size;
}

absl::StatusOr<v1::RunRequest> BuildRequest(const RunArgs& args) {
  v1::RunRequest request;
  for (const std::string& arg : args.argv) request.add_run_argv(arg);
  v1::TestCase* test = request.add_cases();
  v1::ExecLimits* limits = test->mutable_limits();
  if (absl::Status s = ParsePositiveDuration(args.time, "--time", limits->mutable_cpu_time());
      !s.ok()) {
    return s;
  }
  if (args.time.empty()) limits->clear_cpu_time();
  if (absl::Status s = ParsePositiveDuration(args.wall, "--wall", limits->mutable_wall_time());
      !s.ok()) {
    return s;
  }
  if (args.wall.empty()) limits->clear_wall_time();
  if (!args.memory.empty()) {
    absl::StatusOr<int64_t> memory = ParsePositiveSize(args.memory, "--memory");
    if (!memory.ok()) return memory.status();
    limits->set_memory_bytes(*memory);
    request.mutable_sandbox_limits()->set_memory_bytes(*memory);
  }
  if (!args.pids.empty()) {
    int64_t pids = 0;
    if (!absl::SimpleAtoi(args.pids, &pids) || pids <= 0) {
      return absl::InvalidArgumentError("--pids must be a positive integer");
    }
    limits->set_pids(pids);
    request.mutable_sandbox_limits()->set_pids(pids);
  }
  int64_t output = kDefaultOutputBytes;
  if (!args.output_limit.empty()) {
    absl::StatusOr<int64_t> size = ParsePositiveSize(args.output_limit, "--output-limit");
    if (!size.ok()) return size.status();
    output = *size;
  }
  limits->set_output_bytes(output);
  request.set_output_cap_bytes(output);  // pass all of it through
  return request;
}

std::string VerdictName(v1::Verdict verdict) {
  std::string name = v1::Verdict_Name(verdict);
  constexpr absl::string_view kPrefix = "VERDICT_";
  if (absl::StartsWith(name, kPrefix)) name.erase(0, kPrefix.size());
  return name;
}

double Seconds(const google::protobuf::Duration& d) {
  return absl::ToDoubleSeconds(FromProtoDuration(d));
}

json ResultJson(const v1::CaseResult& result) {
  const v1::ExecExit& exit = result.exit();
  return json{{"verdict", VerdictName(result.verdict())},
              {"exit_code", exit.exit_code()},
              {"signal", exit.signal()},
              {"cpu_time", Seconds(exit.cpu_time())},
              {"wall_time", Seconds(exit.wall_time())},
              {"memory_peak_bytes", exit.memory_peak_bytes()},
              {"oom_killed", exit.oom_killed()},
              {"timed_out", exit.timed_out()},
              {"cpu_time_exceeded", exit.cpu_time_exceeded()},
              {"output_truncated", exit.output_truncated()},
              {"stdout", result.stdout()},
              {"stderr", result.stderr()}};
}

// Why the command ended, when a limit ended it; "" otherwise.
std::string LimitNote(const v1::CaseResult& result) {
  const v1::ExecExit& exit = result.exit();
  switch (result.verdict()) {
    case v1::VERDICT_TIME_LIMIT:
      return absl::StrFormat("cpu time limit exceeded (%.3fs of cpu)", Seconds(exit.cpu_time()));
    case v1::VERDICT_WALL_TIME_LIMIT:
      return absl::StrFormat("wall time limit exceeded (%.3fs)", Seconds(exit.wall_time()));
    case v1::VERDICT_MEMORY_LIMIT:
      return absl::StrCat("memory limit exceeded (peak ", FormatSize(exit.memory_peak_bytes()),
                          ")");
    case v1::VERDICT_OUTPUT_LIMIT:
      return "output limit exceeded (output truncated)";
    default:
      return "";
  }
}

}  // namespace

int RunRun(const GlobalArgs& global, const RunArgs& args) {
  absl::StatusOr<v1::RunRequest> request = BuildRequest(args);
  if (!request.ok()) return ReportUsageError(request.status().message());
  // A terminal has no end until ^D; only piped or redirected input is sent.
  if (!::isatty(STDIN_FILENO)) {
    std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    request->mutable_cases(0)->set_stdin(std::move(input));
  }
  ClientOptions options;
  options.max_receive_message_bytes = 256 << 20;
  absl::StatusOr<Client> client = ConnectClient(global, options);
  if (!client.ok()) return ReportApiError(global, client.status());
  absl::StatusOr<v1::RunResponse> response = client->Run(*request);
  if (!response.ok()) return ReportApiError(global, response.status());
  if (response->cases_size() != 1) {
    return ReportApiError(global, absl::InternalError("the daemon returned no result"));
  }
  const v1::CaseResult& result = response->cases(0);
  const v1::ExecExit& exit = result.exit();
  const int code = exit.signal() != 0 ? 128 + exit.signal() : exit.exit_code();
  if (args.json) {
    std::cout << ResultJson(result).dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    std::cout.flush();
    return code;
  }
  bool ok = WriteAll(STDOUT_FILENO, result.stdout());
  ok = WriteAll(STDERR_FILENO, result.stderr()) && ok;
  if (const std::string note = LimitNote(result); !note.empty()) {
    std::cerr << "sbx: " << note << "\n";
  }
  if (!ok && code == 0) return kExitApiError;  // e.g. EPIPE on our stdout
  return code;
}

}  // namespace sbx::cli
