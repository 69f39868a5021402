// Uses the installed SDK the way a user would; exits non-zero on any surprise.
#include <cstdio>

#include "sbx/sbx.h"

int main() {
  absl::StatusOr<int64_t> size = sbx::ParseSize("64M");
  if (!size.ok() || *size != (int64_t{64} << 20)) {
    std::fprintf(stderr, "ParseSize(64M) gave the wrong answer\n");
    return 1;
  }
  absl::StatusOr<sbx::Client> client =
      sbx::Client::Connect("unix:///nonexistent/sbx-consumer.sock");
  if (!client.ok()) {
    std::fprintf(stderr, "Connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  // No daemon there: a real RPC through the linked gRPC stack must fail
  // with UNAVAILABLE.
  sbx::CallOptions call;
  call.timeout = absl::Seconds(5);
  absl::StatusOr<sbx::v1::Sandbox> sandbox = client->GetSandbox("x", call);
  if (sandbox.ok() || sandbox.status().code() != absl::StatusCode::kUnavailable) {
    std::fprintf(stderr, "expected UNAVAILABLE, got %s\n",
                 sandbox.status().ToString().c_str());
    return 1;
  }
  std::printf("sdk consumer ok: sbx %s, %s\n", SBX_VERSION_STRING,
              sbx::FormatSize(*size).c_str());
  return 0;
}
