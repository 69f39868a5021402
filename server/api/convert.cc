#include "server/api/convert.h"

#include <sys/wait.h>

#include <limits>

#include "absl/strings/str_cat.h"

namespace sbx::api {
namespace {

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t ns = absl::ToUnixNanos(t);
  int64_t seconds = ns / 1000000000;
  int64_t nanos = ns % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(nanos));
}

void SetDuration(int64_t us, google::protobuf::Duration* out) {
  out->set_seconds(us / 1000000);
  out->set_nanos(static_cast<int32_t>((us % 1000000) * 1000));
}

}  // namespace

absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d,
                                         const char* field) {
  constexpr int64_t kMaxSeconds = 315576000000;
  if (d.seconds() < -kMaxSeconds || d.seconds() > kMaxSeconds || d.nanos() <= -1000000000 ||
      d.nanos() >= 1000000000 || (d.seconds() > 0 && d.nanos() < 0) ||
      (d.seconds() < 0 && d.nanos() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": malformed duration"));
  }
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

engine::Limits FromProto(const v1::Limits& limits) {
  engine::Limits out;
  if (limits.has_memory_bytes()) out.memory_bytes = limits.memory_bytes();
  if (limits.has_cpus()) out.cpus = limits.cpus();
  if (limits.has_pids()) out.pids = limits.pids();
  return out;
}

absl::StatusOr<manager::CreateParams> FromProto(const v1::CreateSandboxRequest& request) {
  manager::CreateParams params;
  params.image = request.image();
  params.limits = FromProto(request.limits());
  params.env.insert(request.env().begin(), request.env().end());
  params.labels.insert(request.labels().begin(), request.labels().end());
  if (request.has_ttl()) {
    absl::StatusOr<absl::Duration> ttl = FromProto(request.ttl(), "ttl");
    if (!ttl.ok()) return ttl.status();
    params.ttl = *ttl;
  }
  return params;
}

absl::StatusOr<manager::ListFilter> FromProto(const v1::ListSandboxesRequest& request) {
  manager::ListFilter filter;
  filter.label_selector.insert(request.label_selector().begin(),
                               request.label_selector().end());
  switch (request.state()) {
    case v1::SANDBOX_STATE_UNSPECIFIED:
      break;
    case v1::SANDBOX_STATE_CREATING:
      filter.state = manager::SandboxState::kCreating;
      break;
    case v1::SANDBOX_STATE_RUNNING:
      filter.state = manager::SandboxState::kRunning;
      break;
    case v1::SANDBOX_STATE_DEAD:
      filter.state = manager::SandboxState::kDead;
      break;
    case v1::SANDBOX_STATE_DESTROYING:
      filter.state = manager::SandboxState::kDestroying;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("state: unknown value ", static_cast<int>(request.state())));
  }
  return filter;
}

absl::StatusOr<manager::ExecParams> FromProto(const v1::ExecStart& start) {
  manager::ExecParams params;
  params.argv.assign(start.argv().begin(), start.argv().end());
  params.env.insert(start.env().begin(), start.env().end());
  params.cwd = start.cwd();
  params.user = start.user();
  params.tty = start.tty();
  if (start.has_tty_size()) {
    if (start.tty_size().rows() > 65535 || start.tty_size().cols() > 65535) {
      return absl::InvalidArgumentError("tty_size: rows and cols must be at most 65535");
    }
    params.rows = static_cast<uint16_t>(start.tty_size().rows());
    params.cols = static_cast<uint16_t>(start.tty_size().cols());
  }
  if (start.has_timeout()) {
    absl::StatusOr<absl::Duration> timeout = FromProto(start.timeout(), "timeout");
    if (!timeout.ok()) return timeout.status();
    params.timeout = *timeout;
  }
  const v1::ExecLimits& limits = start.limits();
  if (limits.has_wall_time()) {
    absl::StatusOr<absl::Duration> wall = FromProto(limits.wall_time(), "limits.wall_time");
    if (!wall.ok()) return wall.status();
    // The tighter of the two wall-clock limits wins.
    if (*wall > absl::ZeroDuration() &&
        (params.timeout == absl::ZeroDuration() || *wall < params.timeout)) {
      params.timeout = *wall;
    }
  }
  if (limits.has_cpu_time()) {
    absl::StatusOr<absl::Duration> cpu = FromProto(limits.cpu_time(), "limits.cpu_time");
    if (!cpu.ok()) return cpu.status();
    params.limits.cpu_time = *cpu;
  }
  if (limits.has_memory_bytes()) params.limits.memory_bytes = limits.memory_bytes();
  if (limits.has_pids()) params.limits.pids = limits.pids();
  if (limits.has_output_bytes()) params.limits.output_bytes = limits.output_bytes();
  if (limits.has_file_size_bytes()) params.limits.file_size_bytes = limits.file_size_bytes();
  if (limits.has_stack_bytes()) params.limits.stack_bytes = limits.stack_bytes();
  if (limits.has_open_files()) params.limits.open_files = limits.open_files();
  return params;
}

v1::SandboxState ToProto(manager::SandboxState state) {
  switch (state) {
    case manager::SandboxState::kCreating:
      return v1::SANDBOX_STATE_CREATING;
    case manager::SandboxState::kRunning:
      return v1::SANDBOX_STATE_RUNNING;
    case manager::SandboxState::kDead:
      return v1::SANDBOX_STATE_DEAD;
    case manager::SandboxState::kDestroying:
      return v1::SANDBOX_STATE_DESTROYING;
  }
  return v1::SANDBOX_STATE_UNSPECIFIED;
}

void ToProto(const manager::SandboxInfo& info, v1::Sandbox* out) {
  out->set_id(info.id);
  out->set_state(ToProto(info.state));
  out->set_image(info.image);
  v1::Limits* limits = out->mutable_limits();
  if (info.limits.memory_bytes) limits->set_memory_bytes(*info.limits.memory_bytes);
  if (info.limits.cpus) limits->set_cpus(*info.limits.cpus);
  if (info.limits.pids) limits->set_pids(*info.limits.pids);
  out->mutable_labels()->insert(info.labels.begin(), info.labels.end());
  if (info.usage) {
    v1::Usage* usage = out->mutable_usage();
    usage->set_memory_bytes(info.usage->memory_bytes);
    usage->set_memory_peak_bytes(info.usage->memory_peak_bytes);
    SetDuration(info.usage->cpu_usec, usage->mutable_cpu_time());
    usage->set_pids(info.usage->pids);
    usage->set_oom_kills(info.usage->oom_kills);
  }
  SetTimestamp(info.created_at, out->mutable_created_at());
  if (info.expires_at) SetTimestamp(*info.expires_at, out->mutable_expires_at());
  out->set_init_pid(info.init_pid);
}

void ToProto(const engine::ExecExit& exit, const ExecOutcome& outcome, v1::ExecExit* out) {
  const int status = exit.wait_status;
  if (WIFSIGNALED(status)) {
    out->set_signal(WTERMSIG(status));
  } else if (WIFEXITED(status)) {
    out->set_exit_code(WEXITSTATUS(status));
  }
  SetDuration(exit.wall_us, out->mutable_wall_time());
  int64_t cpu_us = exit.user_us + exit.system_us;
  int64_t peak = exit.max_rss_kb * 1024;
  bool oom = false;
  if (outcome.usage) {
    cpu_us = outcome.usage->cpu_usec;
    peak = outcome.usage->memory_peak_bytes;
    oom = outcome.usage->oom_kills > 0;
  }
  SetDuration(cpu_us, out->mutable_cpu_time());
  out->set_memory_peak_bytes(peak);
  out->set_timed_out(exit.timed_out);
  out->set_oom_killed(oom);
  out->set_output_truncated(outcome.output_truncated);
  out->set_cpu_time_exceeded(outcome.cpu_exceeded);
  const bool failed = out->signal() != 0 || out->exit_code() != 0;
  // A program that fails with its peak at its limit ran out of memory, even
  // when it died of a failed allocation rather than the OOM killer.
  const bool at_memory_limit =
      outcome.memory_limit > 0 && peak >= outcome.memory_limit - (int64_t{1} << 20);
  if (outcome.cpu_exceeded) {
    out->set_verdict(v1::VERDICT_TIME_LIMIT);
  } else if (exit.timed_out) {
    out->set_verdict(v1::VERDICT_WALL_TIME_LIMIT);
  } else if (outcome.output_truncated) {
    out->set_verdict(v1::VERDICT_OUTPUT_LIMIT);
  } else if (oom || (failed && at_memory_limit)) {
    out->set_verdict(v1::VERDICT_MEMORY_LIMIT);
  } else if (out->signal() != 0) {
    out->set_verdict(v1::VERDICT_SIGNALED);
  } else if (out->exit_code() != 0) {
    out->set_verdict(v1::VERDICT_RUNTIME_ERROR);
  } else {
    out->set_verdict(v1::VERDICT_OK);
  }
}

}  // namespace sbx::api
