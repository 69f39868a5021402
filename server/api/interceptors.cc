#include "server/api/interceptors.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "server/api/log.h"
#include "server/api/metrics.h"

namespace sbx::api {
namespace {

using grpc::experimental::InterceptionHookPoints;

spdlog::logger& AccessLog() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("access")) return existing;
    auto created = spdlog::default_logger()->clone("access");
    spdlog::register_logger(created);
    return created;
  }();
  return *logger;
}

std::string CodeName(grpc::StatusCode code) {
  // gRPC's codes are absl's, number for number.
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

// The sandbox a request names: its `id` or `sandbox_id`, or those of its
// `start` (Exec's first message). "" when it names none.
std::string SandboxIdOf(const google::protobuf::Message& message) {
  const google::protobuf::Descriptor* d = message.GetDescriptor();
  const google::protobuf::Reflection* r = message.GetReflection();
  for (const char* name : {"id", "sandbox_id"}) {
    const google::protobuf::FieldDescriptor* f = d->FindFieldByName(name);
    if (f != nullptr && f->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !f->is_repeated()) {
      std::string value = r->GetString(message, f);
      if (!value.empty()) return value;
    }
  }
  const google::protobuf::FieldDescriptor* start = d->FindFieldByName("start");
  if (start != nullptr && start->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
      !start->is_repeated() && r->HasField(message, start)) {
    return SandboxIdOf(r->GetMessage(message, start));
  }
  return "";
}

class ObserverInterceptor final : public grpc::experimental::Interceptor {
 public:
  ObserverInterceptor(grpc::experimental::ServerRpcInfo* info, const Authenticator& auth,
                      bool access_log)
      : info_(info), auth_(auth), access_log_(access_log), start_(Clock::now()) {
    const std::string full = info->method();  // "/package.Service/Method"
    method_ = full.substr(full.rfind('/') + 1);
    // Only this service's messages are known to be protobuf messages: the
    // default health service, for one, receives a raw ByteBuffer.
    sandbox_service_ = full.rfind("/sbx.v1.SandboxService/", 0) == 0;
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      absl::StatusOr<std::string> tenant = auth_.Authenticate(*info_->server_context());
      tenant_ = tenant.ok() ? *tenant : "-";
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        sandbox_service_ && !saw_message_) {
      saw_message_ = true;
      const auto* message = static_cast<const google::protobuf::Message*>(methods->GetRecvMessage());
      if (message != nullptr) sandbox_ = SandboxIdOf(*message);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const double ms =
          std::chrono::duration<double, std::milli>(Clock::now() - start_).count();
      const std::string code = CodeName(status.error_code());
      if (!status.ok()) Metrics::Global().RpcError(method_, code);
      if (access_log_) {
        AccessLog().info("rpc method={} tenant={} sandbox={} code={} ms={:.1f}", method_, tenant_,
                         sandbox_.empty() ? "-" : sandbox_, code, ms);
      }
    }
    methods->Proceed();
  }

 private:
  using Clock = std::chrono::steady_clock;

  grpc::experimental::ServerRpcInfo* const info_;
  const Authenticator& auth_;
  const bool access_log_;
  const Clock::time_point start_;
  std::string method_;
  std::string tenant_ = "-";
  std::string sandbox_;
  bool saw_message_ = false;
  bool sandbox_service_ = false;
};

}  // namespace

grpc::experimental::Interceptor* ObserverInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new ObserverInterceptor(info, auth_, access_log_);
}

}  // namespace sbx::api
