// Hostile code against the network: sbxd's own TCP port, the host, and
// anything outside. A sandbox has only its own loopback and no route, so no
// packet can leave it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include "hostile_util.h"

namespace sbx::sec {
namespace {

using std::chrono::seconds;

class NetworkTest : public it::DaemonTest {
 protected:
  static void SetUpTestSuite() {
    it::DaemonOptions o;
    o.listen_tcp = true;
    StartDaemon(o);
  }
  static void TearDownTestSuite() { StopDaemon(); }
};

constexpr const char* kConnect = R"PY(
import socket
def conn(host, port, fam=socket.AF_INET, typ=socket.SOCK_STREAM):
    try:
        s = socket.socket(fam, typ)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    s.settimeout(3)
    try:
        if typ == socket.SOCK_DGRAM:
            s.sendto(b'x', (host, port))
        else:
            s.connect((host, port))
        return 'OK'
    except socket.timeout:
        return 'timeout'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
)PY";

// The first IPv4 address of an up, non-loopback interface of the host.
std::string HostAddress() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string out;
  for (ifaddrs* a = list; a != nullptr && out.empty(); a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    if ((a->ifa_flags & IFF_LOOPBACK) || !(a->ifa_flags & IFF_UP)) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof buf);
    out = buf;
  }
  freeifaddrs(list);
  return out;
}

TEST_F(NetworkTest, DaemonTcpPortIsUnreachable) {
  const int port = daemon().tcp_port();
  ASSERT_TRUE(it::CanConnectTcp(port)) << "sbxd does not listen on 127.0.0.1:" << port;
  SBX_SANDBOX(sb);
  const std::string host = HostAddress();
  std::string code = std::string(kConnect) +
                     "print('loopback', conn('127.0.0.1', " + std::to_string(port) + "))\n";
  if (!host.empty()) {
    code += "print('host', conn('" + host + "', " + std::to_string(port) + "))\n";
  }
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = Py(stub(), sb.id(), code, opts, seconds(30));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    // 127.0.0.1 inside is the sandbox's own loopback: nothing listens there.
    std::string expected = "loopback ECONNREFUSED\n";
    if (!host.empty()) expected += "host ENETUNREACH\n";
    EXPECT_EQ(r.out, expected) << r.Describe();
  }
  ExecResult b = it::RunExec(
      stub(), it::MakeStart(sb.id(), {"bash", "-c",
                                      "echo > /dev/tcp/127.0.0.1/" + std::to_string(port)}));
  ASSERT_TRUE(b.Ok()) << b.Describe();
  EXPECT_EQ(b.exit->exit_code(), 1);
  EXPECT_NE(b.err.find("Connection refused"), std::string::npos) << b.Describe();
  EXPECT_TRUE(it::CanConnectTcp(port)) << "sbxd stopped listening";
  RecordOutcome("127.0.0.1:" + std::to_string(port) + " ECONNREFUSED (own lo)" +
                (host.empty() ? "" : ", host " + host + " ENETUNREACH"));
}

TEST_F(NetworkTest, OutsideAddressesAreUnreachable) {
  SBX_SANDBOX(sb);
  const std::string code = std::string(kConnect) + R"PY(
print('tcp_10.0.0.1:80', conn('10.0.0.1', 80))
print('tcp_1.1.1.1:53', conn('1.1.1.1', 53))
print('udp_1.1.1.1:53', conn('1.1.1.1', 53, typ=socket.SOCK_DGRAM))
rb = conn('255.255.255.255', 67, typ=socket.SOCK_DGRAM)
print('udp_broadcast', 'blocked' if rb in ('ENETUNREACH', 'EACCES') else rb)
r6 = conn('2606:4700:4700::1111', 53, fam=socket.AF_INET6)
print('tcp6', 'unreachable' if r6 in ('ENETUNREACH', 'EAFNOSUPPORT', 'EADDRNOTAVAIL') else r6)
print('raw_icmp', err(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)))
print('packet', err(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)))
routes = [l for l in open('/proc/net/route').read().splitlines()[1:] if l.strip()]
print('routes', len(routes))
)PY";
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = Py(stub(), sb.id(), code, opts, seconds(60));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out,
              "tcp_10.0.0.1:80 ENETUNREACH\ntcp_1.1.1.1:53 ENETUNREACH\n"
              "udp_1.1.1.1:53 ENETUNREACH\nudp_broadcast blocked\ntcp6 unreachable\n"
              "raw_icmp EPERM\npacket EPERM\nroutes 0\n")
        << "as " << (opts.user.empty() ? "sandbox" : opts.user) << ": " << r.Describe();
  }
  ExecResult b = it::RunExec(
      stub(), it::MakeStart(sb.id(), {"bash", "-c", "echo > /dev/tcp/10.0.0.1/80"}));
  ASSERT_TRUE(b.Ok()) << b.Describe();
  EXPECT_EQ(b.exit->exit_code(), 1);
  EXPECT_NE(b.err.find("Network is unreachable"), std::string::npos) << b.Describe();
  RecordOutcome("10.0.0.1:80, 1.1.1.1:53 tcp+udp, IPv6: Network is unreachable; raw/packet EPERM; "
                "no routes");
}

TEST_F(NetworkTest, OnlyLoopbackInterfaceExists) {
  SBX_SANDBOX(sb);
  ExecResult r = Py(stub(), sb.id(), "import socket\nprint(sorted(n for _, n in socket.if_nameindex()))\n");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "['lo']\n") << r.Describe();
  RecordOutcome("interfaces: " + it::Trim(r.out));
}

}  // namespace
}  // namespace sbx::sec
