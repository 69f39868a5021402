// Client construction, address handling and the unary RPCs. Exec lives in
// exec.cc.
#include "sbx/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "internal/client_state.h"
#include "internal/status_macros.h"
#include "sbx/grpc_status.h"
#include "sbx/proto_time.h"

namespace sbx {
namespace internal {

std::string_view NodeOf(std::string_view id) {
  const size_t dot = id.find('.');
  return dot == std::string_view::npos ? std::string_view() : id.substr(dot + 1);
}

void RouteToNode(grpc::ClientContext& context, std::string_view node) {
  if (!node.empty()) context.AddMetadata("sbx-node", std::string(node));
}

void RouteToSandbox(grpc::ClientContext& context, std::string_view id) {
  RouteToNode(context, NodeOf(id));
}

void SetTimeout(grpc::ClientContext& context, absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace internal

namespace {

absl::Status InvalidAddress(absl::string_view address, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid server address \"", address, "\": ", why,
      " (expected unix:///path, /path or host:port)"));
}

bool IsPort(absl::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  return true;
}

void ToProto(const Limits& limits, v1::Limits& out) {
  if (limits.memory_bytes) out.set_memory_bytes(*limits.memory_bytes);
  if (limits.cpus) out.set_cpus(*limits.cpus);
  if (limits.pids) out.set_pids(*limits.pids);
}

// Runs one unary RPC: `rpc(context, response)` with the deadline and
// wait-for-ready policy of `options` / `call`.
// `node`: where a router should send the call ("" lets it choose).
template <typename Response, typename Rpc>
absl::StatusOr<Response> Unary(const ClientOptions& options,
                               const CallOptions& call, Rpc rpc,
                               std::string_view node = {}) {
  grpc::ClientContext context;
  internal::SetTimeout(context, call.timeout.value_or(options.default_timeout));
  internal::RouteToNode(context, node);
  context.set_wait_for_ready(options.wait_for_ready);
  Response response;
  SBX_RETURN_IF_ERROR(FromGrpcStatus(rpc(&context, &response)));
  return response;
}

absl::Status RequireId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("sandbox id is empty");
  return absl::OkStatus();
}

}  // namespace

std::string DefaultAddress() {
  const char* env = std::getenv("SBX_SERVER");
  if (env != nullptr && env[0] != '\0') return env;
  return kDefaultAddress;
}

absl::StatusOr<std::string> NormalizeAddress(std::string_view user_address) {
  // This abseil's string_view is its own type, not std::string_view.
  const absl::string_view address(user_address.data(), user_address.size());
  if (address.empty()) return InvalidAddress(address, "empty");
  if (absl::StartsWith(address, "unix:")) {
    absl::string_view path = address.substr(5);
    if (absl::StartsWith(path, "//")) {
      path.remove_prefix(2);
      if (!absl::StartsWith(path, "/")) {
        return InvalidAddress(address, "unix:// needs an absolute path");
      }
    }
    if (path.empty()) return InvalidAddress(address, "no socket path");
    return std::string(address);
  }
  if (absl::StartsWith(address, "/") || absl::StartsWith(address, "./") ||
      absl::StartsWith(address, "../")) {
    return absl::StrCat("unix:", address);
  }
  // Other gRPC schemes (dns:, ipv4:, ipv6:, unix-abstract:) pass through.
  for (absl::string_view scheme : {"dns:", "ipv4:", "ipv6:", "unix-abstract:"}) {
    if (absl::StartsWith(address, scheme)) return std::string(address);
  }
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return InvalidAddress(address, "no port");
  }
  if (!IsPort(address.substr(colon + 1))) {
    return InvalidAddress(address, "bad port");
  }
  return std::string(address);
}

Client::Client(std::shared_ptr<const State> state) : state_(std::move(state)) {}

absl::StatusOr<Client> Client::Connect(std::string_view address,
                                       ClientOptions options) {
  SBX_ASSIGN_OR_RETURN(std::string target, NormalizeAddress(address));
  if (options.default_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_timeout must be positive");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // sbxd sends output in chunks of up to 256 KiB: one HTTP/2 frame each,
  // not sixteen of the default 16 KiB.
  args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 256 << 10);
  auto state = std::make_shared<State>();
  state->target = std::move(target);
  state->options = options;
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls) {
    if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
      return absl::InvalidArgumentError("tls_cert_pem and tls_key_pem go together");
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca_pem;
    ssl.pem_cert_chain = options.tls_cert_pem;
    ssl.pem_private_key = options.tls_key_pem;
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  // The token goes in as metadata of every call by an interceptor, so that
  // it works on the plain Unix socket as well as over TLS (gRPC's own call
  // credentials refuse plain channels).
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.token.empty()) {
    interceptors.push_back(std::make_unique<internal::BearerTokenInterceptorFactory>(
        absl::StrCat("Bearer ", options.token)));
  }
  state->channel = grpc::experimental::CreateCustomChannelWithInterceptors(
      state->target, credentials, args, std::move(interceptors));
  state->stub = v1::SandboxService::NewStub(state->channel);
  return Client(std::move(state));
}

const std::string& Client::target() const { return state_->target; }

absl::Status Client::WaitForReady(absl::Duration timeout) const {
  if (state_->channel->WaitForConnected(
          absl::ToChronoTime(absl::Now() + timeout))) {
    return absl::OkStatus();
  }
  return absl::DeadlineExceededError(
      absl::StrCat("sbxd at ", state_->target, " not reachable within ",
                   absl::FormatDuration(timeout)));
}

absl::StatusOr<v1::Sandbox> Client::CreateSandbox(
    const CreateOptions& options, const CallOptions& call) const {
  v1::CreateSandboxRequest request;
  request.set_image(options.image);
  ToProto(options.limits, *request.mutable_limits());
  request.mutable_env()->insert(options.env.begin(), options.env.end());
  request.mutable_labels()->insert(options.labels.begin(),
                                   options.labels.end());
  if (options.ttl) *request.mutable_ttl() = ToProtoDuration(*options.ttl);
  SBX_ASSIGN_OR_RETURN(
      v1::CreateSandboxResponse response,
      Unary<v1::CreateSandboxResponse>(
          state_->options, call, [&](auto* context, auto* response) {
            return state_->stub->CreateSandbox(context, request, response);
          }));
  return std::move(*response.mutable_sandbox());
}

absl::StatusOr<v1::Sandbox> Client::GetSandbox(std::string_view id,
                                               const CallOptions& call) const {
  SBX_RETURN_IF_ERROR(RequireId(id));
  v1::GetSandboxRequest request;
  request.set_id(std::string(id));
  SBX_ASSIGN_OR_RETURN(
      v1::GetSandboxResponse response,
      Unary<v1::GetSandboxResponse>(
          state_->options, call, [&](auto* context, auto* response) {
            return state_->stub->GetSandbox(context, request, response);
          },
          internal::NodeOf(id)));
  return std::move(*response.mutable_sandbox());
}

absl::StatusOr<std::vector<v1::Sandbox>> Client::ListSandboxes(
    const ListOptions& options, const CallOptions& call) const {
  v1::ListSandboxesRequest request;
  request.mutable_label_selector()->insert(options.label_selector.begin(),
                                           options.label_selector.end());
  request.set_state(options.state);
  // Behind a router, one call per node; on a single daemon, one call.
  const std::vector<std::string> all_nodes = {""};
  std::vector<v1::Sandbox> sandboxes;
  for (const std::string& node : options.nodes.empty() ? all_nodes : options.nodes) {
    absl::StatusOr<v1::ListSandboxesResponse> response = Unary<v1::ListSandboxesResponse>(
        state_->options, call,
        [&](auto* context, auto* response) {
          return state_->stub->ListSandboxes(context, request, response);
        },
        node);
    if (!response.ok()) {
      if (node.empty()) return response.status();
      return absl::Status(response.status().code(),
                          absl::StrCat("node ", node, ": ", response.status().message()));
    }
    for (v1::Sandbox& sandbox : *response->mutable_sandboxes()) {
      sandboxes.push_back(std::move(sandbox));
    }
  }
  return sandboxes;
}

absl::StatusOr<bool> Client::DestroySandbox(std::string_view id,
                                            const CallOptions& call) const {
  SBX_RETURN_IF_ERROR(RequireId(id));
  v1::DestroySandboxRequest request;
  request.set_id(std::string(id));
  SBX_ASSIGN_OR_RETURN(
      v1::DestroySandboxResponse response,
      Unary<v1::DestroySandboxResponse>(
          state_->options, call, [&](auto* context, auto* response) {
            return state_->stub->DestroySandbox(context, request, response);
          },
          internal::NodeOf(id)));
  return response.existed();
}

absl::StatusOr<v1::Sandbox> Client::SetLimits(std::string_view id,
                                              const Limits& limits,
                                              const CallOptions& call) const {
  SBX_RETURN_IF_ERROR(RequireId(id));
  v1::SetLimitsRequest request;
  request.set_id(std::string(id));
  ToProto(limits, *request.mutable_limits());
  SBX_ASSIGN_OR_RETURN(
      v1::SetLimitsResponse response,
      Unary<v1::SetLimitsResponse>(
          state_->options, call, [&](auto* context, auto* response) {
            return state_->stub->SetLimits(context, request, response);
          },
          internal::NodeOf(id)));
  return std::move(*response.mutable_sandbox());
}

}  // namespace sbx
