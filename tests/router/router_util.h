// What the router tests share: the router of deploy/router run for real, and
// throw-away certificates.
#ifndef SBX_TESTS_ROUTER_ROUTER_UTIL_H_
#define SBX_TESTS_ROUTER_ROUTER_UTIL_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "sbx/client.h"

namespace sbx::it {

// One router: render.sh's configuration served by a real nginx, a child of
// this process with its own temp dir (configuration, runtime files, log) and
// a free loopback port. Stop() ends it by its pid and removes the dir.
class Router {
 public:
  Router() = default;
  ~Router() { Stop(); }
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Renders with `render_args` (options and NODE=HOST:PORT...; --listen and
  // --runtime-dir are added), starts nginx and waits (≤ 10 s) until its port
  // accepts connections.
  ::testing::AssertionResult Start(const std::vector<std::string>& render_args);
  void Stop();

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // nginx's stderr (its error log) so far.
  std::string Log() const;

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A directory of throw-away certificates made with the openssl command:
// CAs and leaf certificates signed by them, each as NAME.crt and NAME.key.
class Pki {
 public:
  explicit Pki(std::string dir) : dir_(std::move(dir)) {}

  ::testing::AssertionResult MakeCa(const std::string& name);
  // A certificate for `cn`, signed by the CA `ca`, with the subject
  // alternative names `san` (e.g. "DNS:localhost,IP:127.0.0.1").
  ::testing::AssertionResult MakeCert(const std::string& name, const std::string& ca,
                                      const std::string& cn, const std::string& san);

  std::string Crt(const std::string& name) const { return dir_ + "/" + name + ".crt"; }
  std::string Key(const std::string& name) const { return dir_ + "/" + name + ".key"; }
  // The PEM text of NAME.crt / NAME.key; "" if it cannot be read.
  std::string CrtPem(const std::string& name) const;
  std::string KeyPem(const std::string& name) const;

 private:
  ::testing::AssertionResult OpenSsl(const std::vector<std::string>& args) const;

  std::string dir_;
};

// The node a sandbox id names (the part after its first '.'), or "".
std::string NodeOf(const std::string& id);

// Whether calls about sandbox `id` through `client` reach that sandbox: an
// Exec (`hostname; cat`, its stdin and the id's hostname back), then a file
// written into it and read back. Any other node would answer NOT_FOUND.
::testing::AssertionResult ReachesItsSandbox(sbx::Client& client, const std::string& id);

}  // namespace sbx::it

#endif  // SBX_TESTS_ROUTER_ROUTER_UTIL_H_
