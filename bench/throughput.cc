// Throughput rows: a sandboxed command's stdout streamed to the client, and
// the client's stdin streamed into a sandboxed command, each against the same
// bytes through a plain pipe to / from a local process. MB = 10^6 bytes.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "bench/host.h"
#include "bench/rpc.h"
#include "bench/scenarios.h"

namespace sbx::bench {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kBuffer = 64 * 1024;
constexpr int64_t kWarmupBytes = int64_t{16} << 20;

double MBps(int64_t bytes, double ms) { return ms > 0 ? bytes / 1e3 / ms : 0; }

std::string MiB(int64_t bytes) { return absl::StrCat(bytes >> 20, " MiB"); }

// `head -c N /dev/zero` read through a pipe by this process; MB/s or -1.
double PipeStdout(const std::string& head, int64_t bytes) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  const auto start = Clock::now();
  const pid_t pid = Spawn({head, "-c", std::to_string(bytes), "/dev/zero"}, -1, fds[1]);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return -1;
  }
  std::string buffer(kBuffer, '\0');
  int64_t got = 0;
  for (;;) {
    const ssize_t n = read(fds[0], buffer.data(), buffer.size());
    if (n > 0) {
      got += n;
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  const int status = WaitOrKill(pid, 60000);
  const double ms = MsSince(start);
  return status == 0 && got == bytes ? MBps(bytes, ms) : -1;
}

// N bytes written by this process through a pipe into `wc -c`; MB/s or -1.
double PipeStdin(const std::string& wc, int64_t bytes) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return -1;
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return -1;
  }
  const auto start = Clock::now();
  const pid_t pid = Spawn({wc, "-c"}, in[0], out[1]);
  close(in[0]);
  close(out[1]);
  const std::string zeros(kBuffer, '\0');
  for (int64_t left = bytes; pid > 0 && left > 0;) {
    const ssize_t n = write(in[1], zeros.data(), std::min<int64_t>(left, zeros.size()));
    if (n > 0) {
      left -= n;
    } else if (errno != EINTR) {
      break;
    }
  }
  close(in[1]);
  char text[64] = {0};
  const ssize_t n = pid > 0 ? read(out[0], text, sizeof(text) - 1) : -1;
  close(out[0]);
  if (pid < 0) return -1;
  const int status = WaitOrKill(pid, 60000);
  const double ms = MsSince(start);
  int64_t counted = -1;
  const bool parsed = n > 0 && absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &counted);
  return status == 0 && parsed && counted == bytes ? MBps(bytes, ms) : -1;
}

Row ThroughputRow(const std::string& key, const std::string& what,
                  std::vector<double> sbx, std::vector<double> pipe, std::string note) {
  Row row(key, what);
  row.goal = ">=50% of a plain pipe";
  if (!sbx.empty()) row.value = MakeSeries("sbx", "MB/s", std::move(sbx));
  if (!pipe.empty()) row.baseline = MakeSeries("plain pipe", "MB/s", std::move(pipe));
  if (row.value && row.baseline) {
    row.ratio = row.value->summary.median / row.baseline->summary.median;
    row.met = *row.ratio >= 0.5 ? "yes" : "no";
  } else {
    row.met = "n/a";
  }
  row.note = std::move(note);
  return row;
}

}  // namespace

std::vector<Row> RunStdout(const Context& ctx) {
  const int64_t bytes = ctx.options.stdout_bytes;
  const std::string what = absl::StrCat("stdout of head -c ", MiB(bytes), " (MB/s)");
  Stub& stub = ctx.daemon.stub();
  const std::string head = FindInPath("head");
  v1::Sandbox box;
  grpc::Status s = CreateSandbox(stub, &box);
  if (!s.ok()) return {ThroughputRow("stdout", what, {}, {}, "create: " + StatusText(s))};
  std::vector<double> sbx, pipe;
  std::string problem;
  auto run_sbx = [&](int64_t n) {
    ExecOutcome run = Exec(stub, box.id(), {"head", "-c", std::to_string(n), "/dev/zero"}, 0,
                           600);
    if (run.status.ok() && run.exit.exit_code() == 0 && run.stdout_bytes == n) {
      return MBps(n, run.exit_ms);
    }
    problem = absl::StrCat("sbx run: ", StatusText(run.status), ", exit ",
                           run.exit.exit_code(), ", ", run.stdout_bytes, " bytes");
    return -1.0;
  };
  run_sbx(kWarmupBytes);
  PipeStdout(head, kWarmupBytes);
  for (int i = 0; i < ctx.options.reps && !g_interrupted; ++i) {
    if (double v = run_sbx(bytes); v > 0) sbx.push_back(v);
    if (double v = PipeStdout(head, bytes); v > 0) pipe.push_back(v);
  }
  DestroySandbox(stub, box.id());
  std::string note = absl::StrCat(ctx.options.reps, " runs of ", MiB(bytes),
                                  "; sbx timed from opening the stream to the exit message");
  if (!problem.empty()) absl::StrAppend(&note, "; ", problem);
  return {ThroughputRow("stdout", what, sbx, pipe, note)};
}

std::vector<Row> RunStdin(const Context& ctx) {
  const int64_t bytes = ctx.options.stdin_bytes;
  const std::string what = absl::StrCat("stdin ", MiB(bytes), " into wc -c (MB/s)");
  Stub& stub = ctx.daemon.stub();
  const std::string wc = FindInPath("wc");
  v1::Sandbox box;
  grpc::Status s = CreateSandbox(stub, &box);
  if (!s.ok()) return {ThroughputRow("stdin", what, {}, {}, "create: " + StatusText(s))};
  std::vector<double> sbx, pipe;
  std::string problem;
  auto run_sbx = [&](int64_t n) {
    ExecOutcome run = Exec(stub, box.id(), {"wc", "-c"}, n, 600);
    int64_t counted = -1;
    const bool parsed =
        absl::SimpleAtoi(absl::StripAsciiWhitespace(run.stdout_head), &counted);
    if (run.status.ok() && run.exit.exit_code() == 0 && parsed && counted == n) {
      return MBps(n, run.exit_ms);
    }
    problem = absl::StrCat("sbx run: ", StatusText(run.status), ", exit ",
                           run.exit.exit_code(), ", wc said '", run.stdout_head, "'");
    return -1.0;
  };
  run_sbx(kWarmupBytes);
  PipeStdin(wc, kWarmupBytes);
  for (int i = 0; i < ctx.options.reps && !g_interrupted; ++i) {
    if (double v = run_sbx(bytes); v > 0) sbx.push_back(v);
    if (double v = PipeStdin(wc, bytes); v > 0) pipe.push_back(v);
  }
  DestroySandbox(stub, box.id());
  std::string note = absl::StrCat(ctx.options.reps, " runs of ", MiB(bytes),
                                  " in 256 KiB messages / 64 KiB pipe writes");
  if (!problem.empty()) absl::StrAppend(&note, "; ", problem);
  return {ThroughputRow("stdin", what, sbx, pipe, note)};
}

}  // namespace sbx::bench
