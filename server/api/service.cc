#include "server/api/service.h"

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/api/convert.h"
#include "server/api/exec_reactor.h"
#include "server/api/files.h"
#include "server/api/log.h"
#include "server/api/metrics.h"
#include "server/api/reactor_order.h"
#include "server/api/run.h"
#include "server/api/status.h"

namespace sbx::api {

spdlog::logger& Log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("api")) return existing;
    auto created = spdlog::default_logger()->clone("api");
    spdlog::register_logger(created);
    return created;
  }();
  return *logger;
}

namespace {

grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context,
                                  const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Status RequireId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("id: must not be empty");
  return absl::OkStatus();
}

}  // namespace

// `lhs = value of expr`, or finish the unary call with its error.
#define ASSIGN_OR_RESPOND(lhs, expr)                                          \
  auto SBX_STATUS_CONCAT_(sbx_or_, __LINE__) = (expr);                        \
  if (!SBX_STATUS_CONCAT_(sbx_or_, __LINE__).ok()) {                          \
    return Respond(context, SBX_STATUS_CONCAT_(sbx_or_, __LINE__).status()); \
  }                                                                           \
  lhs = *std::move(SBX_STATUS_CONCAT_(sbx_or_, __LINE__))

grpc::ServerUnaryReactor* SandboxService::CreateSandbox(
    grpc::CallbackServerContext* context, const v1::CreateSandboxRequest* request,
    v1::CreateSandboxResponse* response) {
  ASSIGN_OR_RESPOND(const std::string tenant, auth_.Authenticate(*context));
  absl::StatusOr<manager::CreateParams> params = FromProto(*request);
  if (!params.ok()) return Respond(context, params.status());
  params->tenant = tenant;
  absl::StatusOr<manager::SandboxInfo> info = manager_.CreateSandbox(*params);
  if (info.ok()) Metrics::Global().SandboxCreated();
  if (info.ok()) ToProto(*info, response->mutable_sandbox());
  return Respond(context, info.status());
}

grpc::ServerUnaryReactor* SandboxService::GetSandbox(grpc::CallbackServerContext* context,
                                                     const v1::GetSandboxRequest* request,
                                                     v1::GetSandboxResponse* response) {
  ASSIGN_OR_RESPOND(const std::string tenant, auth_.Authenticate(*context));
  if (absl::Status s = RequireId(request->id()); !s.ok()) return Respond(context, s);
  absl::StatusOr<manager::SandboxInfo> info = manager_.GetSandbox(tenant, request->id());
  if (info.ok()) ToProto(*info, response->mutable_sandbox());
  return Respond(context, info.status());
}

grpc::ServerUnaryReactor* SandboxService::ListSandboxes(
    grpc::CallbackServerContext* context, const v1::ListSandboxesRequest* request,
    v1::ListSandboxesResponse* response) {
  ASSIGN_OR_RESPOND(const std::string tenant, auth_.Authenticate(*context));
  absl::StatusOr<manager::ListFilter> filter = FromProto(*request);
  if (!filter.ok()) return Respond(context, filter.status());
  for (const manager::SandboxInfo& info : manager_.ListSandboxes(tenant, *filter)) {
    ToProto(info, response->add_sandboxes());
  }
  return Respond(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* SandboxService::DestroySandbox(
    grpc::CallbackServerContext* context, const v1::DestroySandboxRequest* request,
    v1::DestroySandboxResponse* response) {
  ASSIGN_OR_RESPOND(const std::string tenant, auth_.Authenticate(*context));
  if (absl::Status s = RequireId(request->id()); !s.ok()) return Respond(context, s);
  absl::StatusOr<bool> existed = manager_.DestroySandbox(tenant, request->id());
  if (existed.ok()) response->set_existed(*existed);
  if (existed.ok() && *existed) Metrics::Global().SandboxDestroyed();
  return Respond(context, existed.status());
}

grpc::ServerUnaryReactor* SandboxService::SetLimits(grpc::CallbackServerContext* context,
                                                    const v1::SetLimitsRequest* request,
                                                    v1::SetLimitsResponse* response) {
  ASSIGN_OR_RESPOND(const std::string tenant, auth_.Authenticate(*context));
  if (absl::Status s = RequireId(request->id()); !s.ok()) return Respond(context, s);
  const engine::Limits limits = FromProto(request->limits());
  if (!limits.memory_bytes && !limits.cpus && !limits.pids) {
    return Respond(context, absl::InvalidArgumentError(
                                "limits: set at least one of memory_bytes, cpus, pids"));
  }
  absl::StatusOr<manager::SandboxInfo> info = manager_.SetLimits(tenant, request->id(), limits);
  if (info.ok()) ToProto(*info, response->mutable_sandbox());
  return Respond(context, info.status());
}

grpc::ServerBidiReactor<v1::ExecRequest, v1::ExecResponse>* SandboxService::Exec(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<std::string> tenant = auth_.Authenticate(*context);
  if (!tenant.ok()) {
    return new RefusingReactor<grpc::ServerBidiReactor<v1::ExecRequest, v1::ExecResponse>>(
        ToGrpcStatus(tenant.status()));
  }
  return new ExecReactor(manager_, loop_, starts_, *std::move(tenant));
}

grpc::ServerReadReactor<v1::WriteFilesRequest>* SandboxService::WriteFiles(
    grpc::CallbackServerContext* context, v1::WriteFilesResponse* response) {
  absl::StatusOr<std::string> tenant = auth_.Authenticate(*context);
  if (!tenant.ok()) {
    return new RefusingReactor<grpc::ServerReadReactor<v1::WriteFilesRequest>>(
        ToGrpcStatus(tenant.status()));
  }
  return new WriteFilesReactor(manager_, *std::move(tenant), response);
}

grpc::ServerWriteReactor<v1::ReadFileResponse>* SandboxService::ReadFile(
    grpc::CallbackServerContext* context, const v1::ReadFileRequest* request) {
  absl::StatusOr<std::string> tenant = auth_.Authenticate(*context);
  if (!tenant.ok()) {
    return new RefusingReactor<grpc::ServerWriteReactor<v1::ReadFileResponse>>(
        ToGrpcStatus(tenant.status()));
  }
  return new ReadFileReactor(manager_, *tenant, *request);
}

grpc::ServerUnaryReactor* SandboxService::Run(grpc::CallbackServerContext* context,
                                              const v1::RunRequest* request,
                                              v1::RunResponse* response) {
  ASSIGN_OR_RESPOND(const std::string tenant, auth_.Authenticate(*context));
  return StartRun(manager_, runs_, tenant, context, request, response);
}

}  // namespace sbx::api
