// Authentication and tenants on a real sbxd: TLS on loopback with
// certificates made by the test (openssl CLI), bearer tokens, client
// certificates (mTLS), tenant isolation, quotas, ownership across a restart,
// and the SDK connecting with TLS + token.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon.h"
#include "proc_util.h"
#include "sbx/client.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

const char* kAliceToken = "alice-secret-token";
const char* kBobToken = "bob-secret-token";
const char* kCountToken = "count-secret-token";
const char* kMemToken = "mem-secret-token";
const char* kCpuToken = "cpu-secret-token";

std::string Slurp(const std::string& path) {
  std::optional<std::string> text = ReadFile(path);
  return text ? *text : "";
}

// Runs openssl; fails the test (and returns false) when it fails.
bool OpenSsl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = RunProcess(argv, "", seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  return r.exit_code == 0;
}

// A CA and certificates signed by it, in `dir`.
struct Pki {
  std::string dir;
  std::string Path(const std::string& name) const { return dir + "/" + name; }

  bool MakeCa(const std::string& name) {
    return OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", Path(name + ".key"), "-out", Path(name + ".crt"), "-days",
                    "2", "-subj", "/CN=" + name});
  }
  // A certificate for `cn` signed by CA `ca`; `san` e.g. "DNS:localhost,IP:127.0.0.1".
  bool MakeCert(const std::string& name, const std::string& ca, const std::string& cn,
                const std::string& san) {
    const std::string ext = Path(name + ".ext");
    std::ofstream(ext) << "subjectAltName=" << san << "\n";
    return OpenSsl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", Path(name + ".key"), "-out", Path(name + ".csr"), "-subj",
                    "/CN=" + cn}) &&
           OpenSsl({"x509", "-req", "-in", Path(name + ".csr"), "-CA", Path(ca + ".crt"), "-CAkey",
                    Path(ca + ".key"), "-CAcreateserial", "-out", Path(name + ".crt"), "-days", "2",
                    "-extfile", ext});
  }
};

class AuthTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() {
    pki_ = new Pki();
    char tmpl[] = "/tmp/sbx-auth-XXXXXX";
    pki_->dir = mkdtemp(tmpl);
    if (!pki_->MakeCa("ca") || !pki_->MakeCa("rogue-ca") ||
        !pki_->MakeCert("server", "ca", "localhost", "DNS:localhost,IP:127.0.0.1") ||
        !pki_->MakeCert("alice", "ca", "alice-cert", "DNS:alice.clients.test") ||
        !pki_->MakeCert("mallory", "ca", "mallory", "DNS:mallory.clients.test") ||
        !pki_->MakeCert("rogue", "rogue-ca", "alice-cert", "DNS:alice.clients.test")) {
      start_error_ = "could not make certificates";
      return;
    }
    port_ = FreeTcpPort();
    std::ofstream(pki_->Path("sbxd.yaml"))
        << "listen: 127.0.0.1:" << port_ << "\n"
        << "tls:\n"
        << "  cert: " << pki_->Path("server.crt") << "\n"
        << "  key: " << pki_->Path("server.key") << "\n"
        << "  client_ca: " << pki_->Path("ca.crt") << "\n"
        << "tenants:\n"
        << "  alice:\n"
        << "    tokens: [" << Sha256Hex(kAliceToken) << "]\n"
        << "    client_names: [alice.clients.test]\n"
        << "  bob:\n"
        << "    tokens: [" << Sha256Hex(kBobToken) << "]\n"
        << "  counted:\n"
        << "    tokens: [" << Sha256Hex(kCountToken) << "]\n"
        << "    max_sandboxes: 1\n"
        << "  memq:\n"
        << "    tokens: [" << Sha256Hex(kMemToken) << "]\n"
        << "    max_memory: 160M\n"
        << "  cpuq:\n"
        << "    tokens: [" << Sha256Hex(kCpuToken) << "]\n"
        << "    max_cpus: 1\n";
    DaemonOptions o;
    o.extra_args = {"--config", pki_->Path("sbxd.yaml")};
    StartDaemon(o);
  }
  static void TearDownTestSuite() {
    StopDaemon();
    if (pki_ != nullptr) RemoveTree(pki_->dir);
    delete pki_;
    pki_ = nullptr;
  }

  static grpc::SslCredentialsOptions Ssl(const std::string& client = "") {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = Slurp(pki_->Path("ca.crt"));
    if (!client.empty()) {
      ssl.pem_cert_chain = Slurp(pki_->Path(client + ".crt"));
      ssl.pem_private_key = Slurp(pki_->Path(client + ".key"));
    }
    return ssl;
  }
  static std::unique_ptr<Stub> MakeStub(std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return v1::SandboxService::NewStub(
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), creds, args));
  }
  static std::unique_ptr<Stub> TokenStub(const std::string& token) {
    return MakeStub(grpc::CompositeChannelCredentials(grpc::SslCredentials(Ssl()),
                                                      grpc::AccessTokenCredentials(token)));
  }
  static std::unique_ptr<Stub> CertStub(const std::string& client) {
    return MakeStub(grpc::SslCredentials(Ssl(client)));
  }

  static Pki* pki_;
  static int port_;
};
Pki* AuthTest::pki_ = nullptr;
int AuthTest::port_ = 0;

// A sandbox created through `stub`, destroyed through it at scope exit.
class TenantSandbox {
 public:
  TenantSandbox(Stub& stub, const CreateOptions& options = {}) : stub_(stub) {
    status_ = Create(stub, MakeCreate(options), &sandbox_);
  }
  ~TenantSandbox() {
    if (status_.ok()) {
      EXPECT_TRUE(Destroy(stub_, sandbox_.id()).ok());
    }
  }
  const grpc::Status& status() const { return status_; }
  const std::string& id() const { return sandbox_.id(); }

 private:
  Stub& stub_;
  grpc::Status status_;
  v1::Sandbox sandbox_;
};

bool Listed(Stub& stub, const std::string& id) {
  for (const std::string& listed : ListIds(stub)) {
    if (listed == id) return true;
  }
  return false;
}

TEST_F(AuthTest, TokenOverTlsAuthenticates) {
  auto alice = TokenStub(kAliceToken);
  TenantSandbox sb(*alice);
  ASSERT_TRUE(sb.status().ok()) << StatusText(sb.status());
  v1::Sandbox got;
  EXPECT_TRUE(Get(*alice, sb.id(), &got).ok());
  ExecResult r = Sh(*alice, sb.id(), "echo hi");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "hi\n");
}

TEST_F(AuthTest, BadTokenIsUnauthenticated) {
  auto wrong = TokenStub("not-a-token");
  v1::ListSandboxesResponse resp;
  grpc::Status s = List(*wrong, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << StatusText(s);
  v1::Sandbox out;
  s = Create(*wrong, MakeCreate({}), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << StatusText(s);
  // Streams too.
  ExecResult r = RunExec(*wrong, MakeStart("sb-0000000000000000", {"true"}));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << r.Describe();
  // A bad token on the Unix socket is refused as well, not taken as `local`.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer not-a-token");
  grpc::Status unix_status = stub().ListSandboxes(&ctx, v1::ListSandboxesRequest(), &resp);
  EXPECT_EQ(unix_status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, NoCredentialsOnTcpIsUnauthenticated) {
  auto anonymous = MakeStub(grpc::SslCredentials(Ssl()));
  v1::ListSandboxesResponse resp;
  grpc::Status s = List(*anonymous, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << StatusText(s);
  ExecResult r = RunExec(*anonymous, MakeStart("sb-0000000000000000", {"true"}));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << r.Describe();
}

TEST_F(AuthTest, PlainTextToTlsListenerFails) {
  auto plain = MakeStub(grpc::InsecureChannelCredentials());
  v1::ListSandboxesResponse resp;
  grpc::Status s = List(*plain, &resp);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error_code(), grpc::StatusCode::OK);
}

TEST_F(AuthTest, ClientCertificateAuthenticates) {
  auto alice_cert = CertStub("alice");
  auto alice_token = TokenStub(kAliceToken);
  TenantSandbox sb(*alice_cert);
  ASSERT_TRUE(sb.status().ok()) << StatusText(sb.status());
  // The same tenant however it authenticates.
  EXPECT_TRUE(Listed(*alice_token, sb.id()));
}

TEST_F(AuthTest, UnknownClientCertificateIsRejected) {
  // Signed by the trusted CA but naming no tenant: UNAUTHENTICATED.
  auto mallory = CertStub("mallory");
  v1::ListSandboxesResponse resp;
  grpc::Status s = List(*mallory, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << StatusText(s);
  // Signed by another CA (with alice's names): the handshake fails.
  auto rogue = CertStub("rogue");
  s = List(*rogue, &resp);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAVAILABLE ||
              s.error_code() == grpc::StatusCode::UNAUTHENTICATED)
      << StatusText(s);
}

TEST_F(AuthTest, TenantsCannotSeeEachOther) {
  auto alice = TokenStub(kAliceToken);
  auto bob = TokenStub(kBobToken);
  TenantSandbox sb(*alice);
  ASSERT_TRUE(sb.status().ok()) << StatusText(sb.status());
  EXPECT_TRUE(Listed(*alice, sb.id()));
  EXPECT_FALSE(Listed(*bob, sb.id()));
  EXPECT_FALSE(Listed(stub(), sb.id()));  // `local` on the Unix socket

  v1::Sandbox out;
  EXPECT_EQ(Get(*bob, sb.id(), &out).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Get(stub(), sb.id(), &out).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::Limits limits;
  limits.set_pids(10);
  EXPECT_EQ(SetLimits(*bob, sb.id(), limits, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  ExecResult r = RunExec(*bob, MakeStart(sb.id(), {"true"}));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND) << r.Describe();
  bool existed = true;
  ASSERT_TRUE(Destroy(*bob, sb.id(), &existed).ok());
  EXPECT_FALSE(existed);  // to bob it never existed ...
  EXPECT_TRUE(Get(*alice, sb.id(), &out).ok());  // ... and it is still there
  EXPECT_EQ(out.state(), v1::SANDBOX_STATE_RUNNING);

  // Files.
  grpc::ClientContext ctx;
  v1::ReadFileRequest read;
  read.set_sandbox_id(sb.id());
  read.set_path("/etc/hostname");
  auto reader = bob->ReadFile(&ctx, read);
  v1::ReadFileResponse chunk;
  while (reader->Read(&chunk)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext wctx;
  v1::WriteFilesResponse wresp;
  auto writer = bob->WriteFiles(&wctx, &wresp);
  v1::WriteFilesRequest first;
  first.set_sandbox_id(sb.id());
  writer->Write(first);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AuthTest, QuotaOnSandboxCount) {
  auto counted = TokenStub(kCountToken);
  TenantSandbox first(*counted);
  ASSERT_TRUE(first.status().ok()) << StatusText(first.status());
  v1::Sandbox out;
  grpc::Status s = Create(*counted, MakeCreate({}), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << StatusText(s);
  EXPECT_NE(s.error_message().find("at most 1 sandboxes"), std::string::npos) << s.error_message();
  // Other tenants are not held back by it.
  auto bob = TokenStub(kBobToken);
  TenantSandbox other(*bob);
  EXPECT_TRUE(other.status().ok()) << StatusText(other.status());
}

TEST_F(AuthTest, QuotaOnMemory) {
  auto memq = TokenStub(kMemToken);
  CreateOptions o;
  o.memory = 100 << 20;
  TenantSandbox first(*memq, o);
  ASSERT_TRUE(first.status().ok()) << StatusText(first.status());
  v1::Sandbox out;
  grpc::Status s = Create(*memq, MakeCreate(o), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << StatusText(s);
  EXPECT_NE(s.error_message().find("memory"), std::string::npos) << s.error_message();
  // Raising a live sandbox's memory past the quota is refused too.
  v1::Limits limits;
  limits.set_memory_bytes(200 << 20);
  s = SetLimits(*memq, first.id(), limits, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << StatusText(s);
  limits.set_memory_bytes(150 << 20);
  EXPECT_TRUE(SetLimits(*memq, first.id(), limits, &out).ok());
}

TEST_F(AuthTest, QuotaOnCpus) {
  auto cpuq = TokenStub(kCpuToken);
  CreateOptions o;
  o.cpus = 0.75;
  TenantSandbox first(*cpuq, o);
  ASSERT_TRUE(first.status().ok()) << StatusText(first.status());
  o.cpus = 0.5;
  v1::Sandbox out;
  grpc::Status s = Create(*cpuq, MakeCreate(o), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << StatusText(s);
  EXPECT_NE(s.error_message().find("cpu"), std::string::npos) << s.error_message();
  o.cpus = 0.25;
  TenantSandbox fits(*cpuq, o);
  EXPECT_TRUE(fits.status().ok()) << StatusText(fits.status());
}

TEST_F(AuthTest, SdkConnectsWithTlsAndToken) {
  ClientOptions options;
  options.tls = true;
  options.tls_ca_pem = Slurp(pki_->Path("ca.crt"));
  options.tls_server_name = "localhost";
  options.token = kAliceToken;
  absl::StatusOr<Client> client = Client::Connect("127.0.0.1:" + std::to_string(port_), options);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<v1::Sandbox> sb = client->CreateSandbox({});
  ASSERT_TRUE(sb.ok()) << sb.status();
  auto alice = TokenStub(kAliceToken);
  EXPECT_TRUE(Listed(*alice, sb->id()));
  EXPECT_TRUE(client->DestroySandbox(sb->id()).ok());

  options.token = "wrong";
  client = Client::Connect("127.0.0.1:" + std::to_string(port_), options);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->CreateSandbox({}).status().code(), absl::StatusCode::kUnauthenticated);
}

// A stop signal must reach only sbxd's main thread, which takes it with
// sigwait: any other thread that does not block it would take it with the
// default action and kill sbxd on the spot, without its orderly shutdown.
// The TLS credentials make gRPC start threads of its own early; those did.
TEST_F(AuthTest, OnlyTheMainThreadTakesStopSignals) {
  const pid_t pid = daemon().pid();
  const uint64_t stop_bits = (1ULL << (SIGTERM - 1)) | (1ULL << (SIGINT - 1));
  int others = 0;
  for (const std::string& tid : ListDir("/proc/" + std::to_string(pid) + "/task")) {
    if (tid == std::to_string(pid)) continue;  // in sigwait, which unblocks them
    std::optional<std::string> status =
        ReadFile("/proc/" + std::to_string(pid) + "/task/" + tid + "/status");
    if (!status) continue;  // the thread ended meanwhile
    const size_t at = status->find("\nSigBlk:\t");
    ASSERT_NE(at, std::string::npos) << *status;
    const uint64_t blocked = std::stoull(status->substr(at + 9, 16), nullptr, 16);
    const std::string name = ReadFile("/proc/" + std::to_string(pid) + "/task/" + tid + "/comm")
                                 .value_or("?\n");
    EXPECT_EQ(blocked & stop_bits, stop_bits)
        << "thread " << tid << " (" << name.substr(0, name.size() - 1)
        << ") can take SIGTERM or SIGINT; SigBlk " << std::hex << blocked;
    ++others;
  }
  EXPECT_GT(others, 5) << "sbxd should have gRPC's and its own threads";
}

TEST_F(AuthTest, OwnershipSurvivesRestart) {
  std::string id;
  {
    auto alice = TokenStub(kAliceToken);
    v1::Sandbox out;
    ASSERT_TRUE(Create(*alice, MakeCreate({}), &out).ok());
    id = out.id();
  }
  ASSERT_TRUE(daemon().Terminate());
  ASSERT_TRUE(daemon().Restart());
  auto alice = TokenStub(kAliceToken);
  auto bob = TokenStub(kBobToken);
  v1::Sandbox out;
  ASSERT_TRUE(WaitFor([&] { return Get(*alice, id, &out).ok(); }, seconds(10),
                      std::chrono::milliseconds(100)));
  EXPECT_EQ(out.state(), v1::SANDBOX_STATE_RUNNING);
  EXPECT_TRUE(Listed(*alice, id));
  EXPECT_EQ(Get(*bob, id, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(Listed(stub(), id));
  EXPECT_TRUE(Destroy(*alice, id).ok());
}

}  // namespace
}  // namespace sbx::it
