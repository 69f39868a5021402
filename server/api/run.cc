#include "server/api/run.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/api/convert.h"
#include "server/api/log.h"
#include "server/api/metrics.h"
#include "server/api/run_exec.h"
#include "server/api/status.h"
#include "server/common/status.h"
#include "server/common/thread_name.h"
#include "server/engine/files.h"
#include "server/engine/sandbox.h"
#include "server/manager/validation.h"

namespace sbx::api {
namespace {

constexpr int64_t kDefaultOutputCap = 64 << 10;
constexpr int64_t kDefaultOutputLimit = 16 << 20;
constexpr int64_t kDefaultCaseWallSeconds = 30;
constexpr int64_t kDefaultToolWallSeconds = 60;  // compile and checker
constexpr int kMaxCases = 1000;
// A Run's sandbox expires after this long even if sbxd dies mid-run and
// never gets to destroy it.
constexpr absl::Duration kSandboxTtl = absl::Hours(6);
constexpr const char* kCheckDir = "/tmp/sbx-check";
constexpr const char* kCheckInput = "/tmp/sbx-check/input";
constexpr const char* kCheckExpected = "/tmp/sbx-check/expected";
constexpr const char* kCheckActual = "/tmp/sbx-check/actual";

void SetSeconds(google::protobuf::Duration* d, int64_t micros) {
  d->set_seconds(micros / 1000000);
  d->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
}

int64_t Micros(const google::protobuf::Duration& d) {
  return d.seconds() * 1000000 + d.nanos() / 1000;
}

// `limits` with the defaults a Run applies: a wall-clock limit (a Run must
// end) and an output limit (the daemon holds the output in memory).
v1::ExecLimits WithDefaults(v1::ExecLimits limits, int64_t default_wall_seconds) {
  if (!limits.has_wall_time()) {
    if (limits.has_cpu_time() && Micros(limits.cpu_time()) > 0) {
      SetSeconds(limits.mutable_wall_time(), 2 * Micros(limits.cpu_time()) + 1000000);
    } else {
      limits.mutable_wall_time()->set_seconds(default_wall_seconds);
    }
  }
  if (!limits.has_output_bytes()) limits.set_output_bytes(kDefaultOutputLimit);
  return limits;
}

// The command `argv` with `limits`, converted as Exec converts its start
// message. INVALID_ARGUMENT naming `field` for a malformed one.
absl::StatusOr<CommandSpec> MakeSpec(const google::protobuf::RepeatedPtrField<std::string>& argv,
                                     const v1::ExecLimits& limits, int64_t default_wall_seconds,
                                     absl::string_view field) {
  v1::ExecStart start;
  *start.mutable_argv() = argv;
  *start.mutable_limits() = WithDefaults(limits, default_wall_seconds);
  absl::StatusOr<manager::ExecParams> params = FromProto(start);
  if (!params.ok()) return Annotate(params.status(), field);
  if (absl::Status s = manager::ValidateExecLimits(params->limits); !s.ok()) {
    return Annotate(s, field);
  }
  CommandSpec spec;
  spec.params = *std::move(params);
  spec.budget = BudgetOf(start.limits());
  return spec;
}

absl::Status CheckRequest(const v1::RunRequest& request) {
  if (request.run_argv().empty()) return absl::InvalidArgumentError("run_argv: must not be empty");
  if (request.cases_size() > kMaxCases) {
    return absl::InvalidArgumentError(absl::StrCat("cases: at most ", kMaxCases));
  }
  if (request.has_output_cap_bytes() && request.output_cap_bytes() < 0) {
    return absl::InvalidArgumentError("output_cap_bytes: must not be negative");
  }
  if (!v1::CompareMode_IsValid(request.compare())) {
    return absl::InvalidArgumentError("compare: unknown mode");
  }
  for (int i = 0; i < request.files_size(); ++i) {
    absl::StatusOr<std::string> path = engine::CleanSandboxPath(request.files(i).path());
    if (!path.ok()) return Annotate(path.status(), absl::StrCat("files[", i, "].path"));
  }
  if (!request.compile_argv().empty()) {
    RETURN_IF_ERROR(MakeSpec(request.compile_argv(), request.compile_limits(),
                             kDefaultToolWallSeconds, "compile_limits")
                        .status());
  }
  if (!request.checker_argv().empty()) {
    RETURN_IF_ERROR(MakeSpec(request.checker_argv(), request.checker_limits(),
                             kDefaultToolWallSeconds, "checker_limits")
                        .status());
  }
  for (int i = 0; i < request.cases_size(); ++i) {
    RETURN_IF_ERROR(MakeSpec(request.run_argv(), request.cases(i).limits(),
                             kDefaultCaseWallSeconds, absl::StrCat("cases[", i, "].limits"))
                        .status());
  }
  manager::CreateParams params;
  params.env.insert(request.env().begin(), request.env().end());
  return manager::ValidateEnv(params.env, "env");
}

// Strips spaces, tabs, \r, \v and \f at the end of each line and blank lines
// at the end.
std::string TrimTrailingWhitespace(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == absl::string_view::npos) end = text.size();
    absl::string_view line = text.substr(start, end - start);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r' ||
                             line.back() == '\v' || line.back() == '\f')) {
      line.remove_suffix(1);
    }
    out.append(line.data(), line.size());
    out.push_back('\n');
    start = end + 1;
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// One Run, on a pool worker.
class RunJob {
 public:
  RunJob(manager::Manager& manager, std::string tenant, grpc::CallbackServerContext* context,
         const v1::RunRequest& request, v1::RunResponse* response)
      : manager_(manager),
        tenant_(std::move(tenant)),
        context_(context),
        request_(request),
        response_(response) {
    cap_ = request.has_output_cap_bytes() ? request.output_cap_bytes() : kDefaultOutputCap;
  }

  absl::Status Run();

 private:
  absl::Status CreateSandbox();
  absl::Status WriteFiles();
  absl::Status WriteFile(const std::string& path, absl::string_view content, uint32_t mode);
  // false: the compile failed (the verdict is set).
  absl::StatusOr<bool> Compile();
  absl::Status RunCase(const v1::TestCase& test, v1::CaseResult* result);
  absl::Status Check(const v1::TestCase& test, const std::string& actual,
                     v1::CaseResult* result);
  bool Cancelled() const { return context_->IsCancelled(); }
  void Fill(const CommandResult& command, v1::CaseResult* result) const;

  manager::Manager& manager_;
  const std::string tenant_;  // owns the ephemeral sandbox, pays its quota
  grpc::CallbackServerContext* context_;
  const v1::RunRequest& request_;
  v1::RunResponse* response_;
  int64_t cap_ = kDefaultOutputCap;
  std::string id_;
  std::shared_ptr<engine::SandboxFs> fs_;
};

absl::Status RunJob::Run() {
  RETURN_IF_ERROR(CreateSandbox());
  absl::Cleanup destroy = [this] {
    fs_.reset();
    absl::StatusOr<bool> destroyed = manager_.DestroySandbox(tenant_, id_);
    if (destroyed.ok() && *destroyed) Metrics::Global().SandboxDestroyed();
    if (!destroyed.ok()) {
      Log().error("sandbox {}: destroying after its run: {}", id_, destroyed.status().ToString());
    }
  };
  RETURN_IF_ERROR(WriteFiles());
  ASSIGN_OR_RETURN(bool compiled, Compile());
  if (!compiled) return absl::OkStatus();
  response_->set_verdict(v1::VERDICT_OK);
  for (const v1::TestCase& test : request_.cases()) {
    if (Cancelled()) return absl::CancelledError("the client cancelled the run");
    v1::CaseResult* result = response_->add_cases();
    RETURN_IF_ERROR(RunCase(test, result));
    if (response_->verdict() == v1::VERDICT_OK && result->verdict() != v1::VERDICT_OK) {
      response_->set_verdict(result->verdict());
    }
  }
  return absl::OkStatus();
}

absl::Status RunJob::CreateSandbox() {
  manager::CreateParams params;
  params.image = request_.image();
  params.limits = FromProto(request_.sandbox_limits());
  params.env.insert(request_.env().begin(), request_.env().end());
  params.labels["sbx.run"] = "1";
  params.ttl = kSandboxTtl;
  params.tenant = tenant_;
  ASSIGN_OR_RETURN(manager::SandboxInfo info, manager_.CreateSandbox(params));
  Metrics::Global().SandboxCreated();
  id_ = info.id;
  response_->set_sandbox_id(id_);
  return absl::OkStatus();
}

absl::Status RunJob::WriteFiles() {
  ASSIGN_OR_RETURN(fs_, manager_.OpenSandboxFs(tenant_, id_, engine::kSandboxUid));
  for (const v1::File& file : request_.files()) {
    ASSIGN_OR_RETURN(std::string path, engine::CleanSandboxPath(file.path()));
    RETURN_IF_ERROR(WriteFile(path, file.content(), file.mode()));
  }
  return absl::OkStatus();
}

absl::Status RunJob::WriteFile(const std::string& path, absl::string_view content,
                               uint32_t mode) {
  ASSIGN_OR_RETURN(std::unique_ptr<engine::FileWriter> writer, fs_->CreateFile(path, mode));
  for (size_t off = 0; off < content.size(); off += engine::kFileChunkBytes) {
    RETURN_IF_ERROR(writer->Write(content.substr(off, engine::kFileChunkBytes)));
  }
  return writer->Close();
}

// A start failure that is the submission's doing (a missing binary, one
// that is not executable) is a result; anything else fails the Run.
bool IsStartFailure(const absl::Status& status) {
  return status.code() == absl::StatusCode::kNotFound ||
         status.code() == absl::StatusCode::kPermissionDenied;
}

void StartFailed(const absl::Status& status, v1::Verdict verdict, v1::CaseResult* result) {
  result->set_verdict(verdict);
  result->mutable_exit()->set_exit_code(127);  // as a shell reports it
  result->mutable_exit()->set_verdict(verdict);
  result->set_stderr(std::string(status.message()));
}

absl::StatusOr<bool> RunJob::Compile() {
  if (request_.compile_argv().empty()) return true;
  ASSIGN_OR_RETURN(CommandSpec spec, MakeSpec(request_.compile_argv(), request_.compile_limits(),
                                              kDefaultToolWallSeconds, "compile_limits"));
  v1::CaseResult* result = response_->mutable_compile();
  absl::StatusOr<CommandResult> command =
      RunCommand(manager_, tenant_, id_, spec, [this] { return Cancelled(); });
  if (!command.ok() && !IsStartFailure(command.status())) {
    return Annotate(command.status(), "compiling");
  }
  if (!command.ok()) {
    StartFailed(command.status(), v1::VERDICT_COMPILE_ERROR, result);
  } else {
    Fill(*command, result);
  }
  if (result->verdict() == v1::VERDICT_OK) return true;
  result->set_verdict(v1::VERDICT_COMPILE_ERROR);
  response_->set_verdict(v1::VERDICT_COMPILE_ERROR);
  return false;
}

absl::Status RunJob::RunCase(const v1::TestCase& test, v1::CaseResult* result) {
  ASSIGN_OR_RETURN(CommandSpec spec, MakeSpec(request_.run_argv(), test.limits(),
                                              kDefaultCaseWallSeconds, "case limits"));
  spec.stdin_data = test.stdin();
  absl::StatusOr<CommandResult> command =
      RunCommand(manager_, tenant_, id_, spec, [this] { return Cancelled(); });
  if (!command.ok()) {
    if (!IsStartFailure(command.status())) return Annotate(command.status(), "running a case");
    StartFailed(command.status(), v1::VERDICT_RUNTIME_ERROR, result);
    return absl::OkStatus();
  }
  Fill(*command, result);
  if (result->verdict() != v1::VERDICT_OK) return absl::OkStatus();
  if (!request_.checker_argv().empty()) return Check(test, command->out, result);
  if (test.has_expected_stdout() &&
      !OutputMatches(command->out, test.expected_stdout(), request_.compare())) {
    result->set_verdict(v1::VERDICT_WRONG_ANSWER);
  }
  return absl::OkStatus();
}

absl::Status RunJob::Check(const v1::TestCase& test, const std::string& actual,
                           v1::CaseResult* result) {
  RETURN_IF_ERROR(fs_->MakeDirectory(kCheckDir, 0755));
  RETURN_IF_ERROR(WriteFile(kCheckInput, test.stdin(), 0644));
  RETURN_IF_ERROR(WriteFile(kCheckExpected, test.expected_stdout(), 0644));
  RETURN_IF_ERROR(WriteFile(kCheckActual, actual, 0644));
  ASSIGN_OR_RETURN(CommandSpec spec, MakeSpec(request_.checker_argv(), request_.checker_limits(),
                                              kDefaultToolWallSeconds, "checker_limits"));
  for (const char* path : {kCheckInput, kCheckExpected, kCheckActual}) {
    spec.params.argv.push_back(path);
  }
  spec.params.env["SBX_INPUT"] = kCheckInput;
  spec.params.env["SBX_EXPECTED"] = kCheckExpected;
  spec.params.env["SBX_ACTUAL"] = kCheckActual;
  absl::StatusOr<CommandResult> checker =
      RunCommand(manager_, tenant_, id_, spec, [this] { return Cancelled(); });
  if (!checker.ok()) {
    if (!IsStartFailure(checker.status())) return Annotate(checker.status(), "running the checker");
    // The judge's own checker is missing: not the submission's fault.
    result->set_verdict(v1::VERDICT_INTERNAL_ERROR);
    result->set_checker_output(std::string(checker.status().message()));
    return absl::OkStatus();
  }
  std::string output = checker->out + checker->err;
  if (static_cast<int64_t>(output.size()) > cap_) output.resize(static_cast<size_t>(cap_));
  result->set_checker_output(std::move(output));
  switch (checker->exit.verdict()) {
    case v1::VERDICT_OK:
      break;
    case v1::VERDICT_RUNTIME_ERROR:
      result->set_verdict(v1::VERDICT_WRONG_ANSWER);
      break;
    default:  // the checker itself crashed or ran out of a limit
      result->set_verdict(v1::VERDICT_INTERNAL_ERROR);
      break;
  }
  return absl::OkStatus();
}

void RunJob::Fill(const CommandResult& command, v1::CaseResult* result) const {
  *result->mutable_exit() = command.exit;
  result->set_verdict(command.exit.verdict());
  const size_t cap = static_cast<size_t>(cap_);
  result->set_stdout(command.out.substr(0, cap));
  result->set_stderr(command.err.substr(0, cap));
  result->set_stdout_capped(command.out.size() > cap || command.err.size() > cap);
}

}  // namespace

bool OutputMatches(const std::string& actual, const std::string& expected,
                   v1::CompareMode mode) {
  if (mode == v1::COMPARE_MODE_IGNORE_TRAILING_WHITESPACE) {
    return TrimTrailingWhitespace(actual) == TrimTrailingWhitespace(expected);
  }
  return actual == expected;
}

// ---- the pool -----------------------------------------------------------------

RunPool::RunPool(int threads, size_t max_queued, std::string what, const std::string& thread_name)
    : max_queued_(max_queued), what_(std::move(what)) {
  threads = std::max(threads, 1);
  workers_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    workers_.emplace_back([this] { Work(); });
    NameThread(workers_.back(), thread_name);
  }
}

RunPool::~RunPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& worker : workers_) worker.join();
}

int RunPool::DefaultThreads() {
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(cpus, 2, 8);
}

absl::Status RunPool::Submit(Job job) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("sbxd is shutting down");
  if (queue_.size() >= max_queued_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many ", what_, " waiting (", max_queued_, "); retry later"));
  }
  queue_.push_back(std::move(job));
  return absl::OkStatus();
}

void RunPool::Work() {
  for (;;) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](RunPool* pool) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool->mu_) {
            return pool->stopping_ || !pool->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(job)();
  }
}

// ---- the handler ----------------------------------------------------------------

grpc::ServerUnaryReactor* StartRun(manager::Manager& manager, RunPool& pool,
                                   const std::string& tenant,
                                   grpc::CallbackServerContext* context,
                                   const v1::RunRequest* request, v1::RunResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = CheckRequest(*request); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  // The request, response and context live until Finish.
  absl::Status queued = pool.Submit([&manager, tenant, context, request, response, reactor]() {
    RunJob job(manager, tenant, context, *request, response);
    absl::Status status = job.Run();
    if (!status.ok()) {
      if (status.code() != absl::StatusCode::kCancelled) {
        const std::string& id = response->sandbox_id();
        Log().warn("run in sandbox {}: {}", id.empty() ? std::string("(none)") : id,
                   status.ToString());
      }
      response->Clear();
    }
    reactor->Finish(ToGrpcStatus(status));
  });
  if (!queued.ok()) reactor->Finish(ToGrpcStatus(queued));
  return reactor;
}

}  // namespace sbx::api
