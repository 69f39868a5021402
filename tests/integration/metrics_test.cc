// Prometheus metrics over HTTP (metrics_listen) and the per-RPC access log:
// the counters move after creates, execs, limit hits, destroys and errors.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

// GET http://127.0.0.1:port/path; the body, or "" on any failure.
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[65536];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || response.find(" 200 ") == std::string::npos ||
      body == std::string::npos) {
    return "";
  }
  return response.substr(body + 4);
}

// "name{labels}" (exactly as exposed, labels sorted by name) -> value.
std::map<std::string, double> Scrape(int port) {
  std::map<std::string, double> out;
  for (const std::string& line : SplitLines(HttpGet(port, "/metrics"))) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

double Value(const std::map<std::string, double>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

class MetricsTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() {
    port_ = FreeTcpPort();
    DaemonOptions o;
    o.extra_args = {"--metrics-listen", "127.0.0.1:" + std::to_string(port_)};
    StartDaemon(o);
  }
  static void TearDownTestSuite() { StopDaemon(); }
  static int port_;
};
int MetricsTest::port_ = 0;

// (The labelled families, sbx_limit_hits_total and sbx_rpc_errors_total,
// appear with their first sample; CountersMove checks them.)
TEST_F(MetricsTest, ExposesEveryFamily) {
  const std::string body = HttpGet(port_, "/metrics");
  ASSERT_FALSE(body.empty()) << "no /metrics on 127.0.0.1:" << port_;
  for (const char* family :
       {"sbx_sandboxes", "sbx_pool_ready", "sbx_sandboxes_created_total",
        "sbx_sandboxes_destroyed_total", "sbx_execs_total", "sbx_exec_duration_seconds",
        "sbx_oom_kills_total"}) {
    EXPECT_NE(body.find(std::string("# TYPE ") + family + " "), std::string::npos)
        << family << "\n"
        << body;
  }
  EXPECT_EQ(Value(Scrape(port_), "sbx_pool_ready"), 0);  // --pool-size 0
}

TEST_F(MetricsTest, CountersMove) {
  const auto before = Scrape(port_);
  ASSERT_FALSE(before.empty());
  std::string id;
  {
    SBX_SANDBOX(sb);
    id = sb.id();
    auto during = Scrape(port_);
    EXPECT_EQ(Value(during, "sbx_sandboxes_created_total"),
              Value(before, "sbx_sandboxes_created_total") + 1);
    EXPECT_GE(Value(during, "sbx_sandboxes{state=\"RUNNING\"}"), 1);

    ExecResult ok = Sh(stub(), sb.id(), "true");
    ASSERT_TRUE(ok.Ok()) << ok.Describe();
    // Output limit: a limit hit of kind "output".
    v1::ExecStart start = MakeStart(sb.id(), {"sh", "-c", "yes | head -c 100000"});
    start.mutable_limits()->set_output_bytes(1000);
    ExecResult limited = RunExec(stub(), start);
    ASSERT_TRUE(limited.Ok()) << limited.Describe();
    EXPECT_EQ(limited.exit->verdict(), v1::VERDICT_OUTPUT_LIMIT) << limited.Describe();

    auto after_exec = Scrape(port_);
    EXPECT_EQ(Value(after_exec, "sbx_execs_total"), Value(before, "sbx_execs_total") + 2);
    EXPECT_EQ(Value(after_exec, "sbx_exec_duration_seconds_count"),
              Value(before, "sbx_exec_duration_seconds_count") + 2);
    EXPECT_EQ(Value(after_exec, "sbx_limit_hits_total{kind=\"output\"}"),
              Value(before, "sbx_limit_hits_total{kind=\"output\"}") + 1);
  }
  // An error: NOT_FOUND from GetSandbox, counted by method and code.
  v1::Sandbox out;
  grpc::Status s = Get(stub(), "sb-00000000000000ff", &out);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  const auto after = Scrape(port_);
  EXPECT_EQ(Value(after, "sbx_sandboxes_destroyed_total"),
            Value(before, "sbx_sandboxes_destroyed_total") + 1);
  const std::string errors = "sbx_rpc_errors_total{code=\"NOT_FOUND\",method=\"GetSandbox\"}";
  EXPECT_EQ(Value(after, errors), Value(before, errors) + 1);
  EXPECT_EQ(Value(after, "sbx_sandboxes{state=\"RUNNING\"}"),
            Value(before, "sbx_sandboxes{state=\"RUNNING\"}"));

  // The access log has one line per RPC, with tenant, method, id and code.
  const std::string log = daemon().LogTail(65536);
  EXPECT_NE(log.find("rpc method=GetSandbox tenant=local sandbox=sb-00000000000000ff "
                     "code=NOT_FOUND ms="),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("rpc method=CreateSandbox tenant=local sandbox=- code=OK ms="),
            std::string::npos);
  EXPECT_NE(log.find("rpc method=Exec tenant=local sandbox=" + id + " code=OK ms="),
            std::string::npos);
  EXPECT_NE(log.find("rpc method=DestroySandbox tenant=local sandbox=" + id + " code=OK ms="),
            std::string::npos);
}

}  // namespace
}  // namespace sbx::it
