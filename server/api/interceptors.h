// The RPC observer: a server interceptor on every call of every service
// that writes one access-log line (tenant, method, sandbox id when the
// request names one, code, latency) and counts failed RPCs by method and
// code in Metrics. It authenticates the call itself (the same Authenticator
// the handlers use) only to name the tenant; it never refuses a call.
#ifndef SBX_SERVER_API_INTERCEPTORS_H_
#define SBX_SERVER_API_INTERCEPTORS_H_

#include <grpcpp/support/server_interceptor.h>

#include "server/api/auth.h"

namespace sbx::api {

class ObserverInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `auth` must outlive the server. `access_log`: write the per-RPC lines.
  ObserverInterceptorFactory(const Authenticator& auth, bool access_log)
      : auth_(auth), access_log_(access_log) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const Authenticator& auth_;
  const bool access_log_;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_INTERCEPTORS_H_
