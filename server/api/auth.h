// Who is calling: every RPC of SandboxService is authenticated here, in the
// handler, before anything else (an explicit per-call check rather than a
// grpc::AuthMetadataProcessor, because the processor only runs on TLS
// credentials, while the Unix socket and the dev-only insecure TCP
// listener need the same rules, and because the handler needs the tenant
// as a value to pass to the manager).
//
// The rules, in order:
//  1. `authorization: Bearer <token>` metadata: the tenant whose
//     tenants.*.tokens holds sha256(token); an unknown token is
//     UNAUTHENTICATED on every listener.
//  2. A caller on the Unix socket (0600, so the daemon's own user), or on a
//     plain-TCP listener when insecure_tcp is set (development, or nodes
//     reachable only by a router): the default tenant.
//  3. A client certificate verified against tls.client_ca (mTLS): the tenant
//     whose client_names holds its subject CN or a SAN; none is
//     UNAUTHENTICATED.
//  4. Anything else (TCP without credentials): UNAUTHENTICATED.
//
// Thread-safe after construction (read-only).
#ifndef SBX_SERVER_API_AUTH_H_
#define SBX_SERVER_API_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/config/config.h"

namespace sbx::api {

class Authenticator {
 public:
  // `plain_tcp_is_default`: callers on a non-TLS TCP connection without a
  // token are the default tenant (insecure_tcp) instead of UNAUTHENTICATED.
  Authenticator(std::string default_tenant, const std::vector<config::Tenant>& tenants,
                bool plain_tcp_is_default = false);

  // The caller's tenant, or UNAUTHENTICATED saying what is missing.
  absl::StatusOr<std::string> Authenticate(const grpc::ServerContextBase& context) const;

 private:
  std::string default_tenant_;
  bool plain_tcp_is_default_;
  std::map<std::string, std::string> by_token_sha256_;
  std::map<std::string, std::string> by_client_name_;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_AUTH_H_
