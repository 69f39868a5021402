#include "server/api/auth.h"

#include <grpc/grpc_security_constants.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sbx::api {
namespace {

constexpr absl::string_view kBearer = "Bearer ";

// Certificate names grpc puts in the auth context of a TLS peer.
constexpr const char* kCertNameProperties[] = {
    GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME, "x509_dns_san", "x509_uri_san",
    "x509_email_san"};

bool IsTls(const grpc::AuthContext* auth) {
  if (auth == nullptr) return false;
  for (const grpc::string_ref& type :
       auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
    if (type == GRPC_SSL_TRANSPORT_SECURITY_TYPE || type == GRPC_TLS_TRANSPORT_SECURITY_TYPE) {
      return true;
    }
  }
  return false;
}

}  // namespace

Authenticator::Authenticator(std::string default_tenant,
                             const std::vector<config::Tenant>& tenants,
                             bool plain_tcp_is_default)
    : default_tenant_(std::move(default_tenant)), plain_tcp_is_default_(plain_tcp_is_default) {
  for (const config::Tenant& t : tenants) {
    for (const std::string& h : t.token_sha256) by_token_sha256_[h] = t.name;
    for (const std::string& n : t.client_names) by_client_name_[n] = t.name;
  }
}

absl::StatusOr<std::string> Authenticator::Authenticate(
    const grpc::ServerContextBase& context) const {
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    if (!absl::StartsWithIgnoreCase(value, kBearer) || value.size() == kBearer.size()) {
      return absl::UnauthenticatedError(
          "authorization metadata must be `Bearer <token>`");
    }
    auto tenant = by_token_sha256_.find(config::TokenSha256(value.substr(kBearer.size())));
    if (tenant == by_token_sha256_.end()) {
      return absl::UnauthenticatedError("invalid bearer token");
    }
    return tenant->second;
  }
  if (absl::StartsWith(context.peer(), "unix:")) return default_tenant_;

  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (plain_tcp_is_default_ && !IsTls(auth.get())) return default_tenant_;
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    std::string first_name;
    for (const char* property : kCertNameProperties) {
      for (const grpc::string_ref& name : auth->FindPropertyValues(property)) {
        auto tenant = by_client_name_.find(std::string(name.data(), name.size()));
        if (tenant != by_client_name_.end()) return tenant->second;
        if (first_name.empty()) first_name.assign(name.data(), name.size());
      }
    }
    return absl::UnauthenticatedError(absl::StrCat(
        "client certificate (", first_name, ") names no tenant (tenants.*.client_names)"));
  }
  return absl::UnauthenticatedError(
      "no credentials: send `authorization: Bearer <token>` metadata or a client certificate");
}

}  // namespace sbx::api
