// The grpc -> absl status conversion, address handling and proto time.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "sbx/client.h"
#include "sbx/grpc_status.h"
#include "sbx/proto_time.h"

namespace sbx {
namespace {

TEST(FromGrpcStatusTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  for (int code = 1; code <= 16; ++code) {
    absl::Status s = FromGrpcStatus(
        grpc::Status(static_cast<grpc::StatusCode>(code), "msg"));
    EXPECT_EQ(static_cast<int>(s.code()), code);
    EXPECT_EQ(s.message(), "msg");
  }
  absl::Status not_found = FromGrpcStatus(
      grpc::Status(grpc::StatusCode::NOT_FOUND, "sandbox x not found"));
  EXPECT_EQ(not_found.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(not_found.message(), "sandbox x not found");
}

TEST(FromGrpcStatusTest, OutOfRangeCodeBecomesUnknown) {
  // 20 is past the last code (16) but, unlike 99, still a value the enum can
  // hold: anything larger is undefined behaviour (UBSan flags it).
  absl::Status s =
      FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(20), "odd"));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(s.message(), "odd");
}

TEST(NormalizeAddressTest, MapsUserFormsToTargets) {
  EXPECT_EQ(*NormalizeAddress(kDefaultAddress), kDefaultAddress);
  EXPECT_EQ(*NormalizeAddress("unix:/run/x.sock"), "unix:/run/x.sock");
  EXPECT_EQ(*NormalizeAddress("/run/x.sock"), "unix:/run/x.sock");
  EXPECT_EQ(*NormalizeAddress("./x.sock"), "unix:./x.sock");
  EXPECT_EQ(*NormalizeAddress("localhost:7000"), "localhost:7000");
  EXPECT_EQ(*NormalizeAddress("[::1]:7000"), "[::1]:7000");
  EXPECT_EQ(*NormalizeAddress("dns:///sbx.example:443"),
            "dns:///sbx.example:443");
}

TEST(NormalizeAddressTest, RejectsBadAddresses) {
  for (const char* bad : {"", "unix:", "unix://", "unix://relative",
                          "localhost", "host:", "host:port", ":7000",
                          "host:123456"}) {
    absl::StatusOr<std::string> target = NormalizeAddress(bad);
    EXPECT_FALSE(target.ok()) << "accepted \"" << bad << "\"";
    if (!target.ok()) {
      EXPECT_EQ(target.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(DefaultAddressTest, HonoursSbxServer) {
  ::unsetenv("SBX_SERVER");
  EXPECT_EQ(DefaultAddress(), kDefaultAddress);
  ::setenv("SBX_SERVER", "", 1);
  EXPECT_EQ(DefaultAddress(), kDefaultAddress);
  ::setenv("SBX_SERVER", "/tmp/other.sock", 1);
  EXPECT_EQ(DefaultAddress(), "/tmp/other.sock");
  ::unsetenv("SBX_SERVER");
}

TEST(ClientTest, ConnectRejectsBadAddressAndUnreachableDaemonIsUnavailable) {
  EXPECT_EQ(Client::Connect("nonsense").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Client> client =
      Client::Connect("/nonexistent/sbx-test.sock");
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(client->target(), "unix:/nonexistent/sbx-test.sock");
  absl::StatusOr<v1::Sandbox> got = client->GetSandbox("abc");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client->GetSandbox("").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ProtoTimeTest, RoundTrips) {
  for (absl::Duration d : {absl::ZeroDuration(), absl::Milliseconds(1500),
                           -absl::Milliseconds(1500), absl::Hours(30)}) {
    google::protobuf::Duration p = ToProtoDuration(d);
    EXPECT_EQ(FromProtoDuration(p), d);
    EXPECT_TRUE(p.seconds() == 0 || p.nanos() == 0 ||
                (p.seconds() < 0) == (p.nanos() < 0));
  }
  EXPECT_EQ(ToProtoDuration(absl::InfiniteDuration()).seconds(),
            315'576'000'000);
  const absl::Time t = absl::FromUnixMillis(1'700'000'000'123);
  google::protobuf::Timestamp ts = ToProtoTimestamp(t);
  EXPECT_EQ(ts.seconds(), 1'700'000'000);
  EXPECT_EQ(ts.nanos(), 123'000'000);
  EXPECT_EQ(FromProtoTimestamp(ts), t);
}

}  // namespace
}  // namespace sbx
