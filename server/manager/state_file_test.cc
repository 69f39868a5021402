#include "server/manager/state_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace sbx::manager {
namespace {

PersistedSandbox Sample() {
  PersistedSandbox s;
  s.id = "sb-00112233445566ff";
  s.pid = 4242;
  s.start_time = 123456789012ull;
  s.slot = 7;
  s.limits.memory_bytes = 256 << 20;
  s.limits.cpus = 0.5;
  s.limits.pids = 64;
  s.labels = {{"app", "judge"}, {"x/y", ""}};
  s.env = {{"FOO", "bar=baz"}, {"UNICODE", "\xc3\xa9t\xc3\xa9"}};
  s.image = "host";
  s.created_at = absl::FromUnixNanos(1700000000123456789);
  s.expires_at = s.created_at + absl::Hours(1);
  return s;
}

TEST(StateFileTest, RoundTrip) {
  PersistedSandbox in = Sample();
  absl::StatusOr<PersistedSandbox> out = ParseState(SerializeState(in));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->id, in.id);
  EXPECT_EQ(out->pid, in.pid);
  EXPECT_EQ(out->start_time, in.start_time);
  EXPECT_EQ(out->slot, in.slot);
  EXPECT_EQ(*out->limits.memory_bytes, *in.limits.memory_bytes);
  EXPECT_EQ(*out->limits.cpus, *in.limits.cpus);
  EXPECT_EQ(*out->limits.pids, *in.limits.pids);
  EXPECT_EQ(out->labels, in.labels);
  EXPECT_EQ(out->env, in.env);
  EXPECT_EQ(out->image, in.image);
  EXPECT_EQ(out->created_at, in.created_at);
  ASSERT_TRUE(out->expires_at.has_value());
  EXPECT_EQ(*out->expires_at, *in.expires_at);
}

TEST(StateFileTest, NoExpiry) {
  PersistedSandbox in = Sample();
  in.expires_at.reset();
  absl::StatusOr<PersistedSandbox> out = ParseState(SerializeState(in));
  ASSERT_TRUE(out.ok());
  EXPECT_FALSE(out->expires_at.has_value());
}

TEST(StateFileTest, RejectsCorruptFiles) {
  for (const char* bad : {"", "{", "[]", "{\"version\": 1}", "{\"version\": 99}",
                          "null"}) {
    EXPECT_EQ(ParseState(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  std::string text = SerializeState(Sample());
  text.replace(text.find("sb-00112233445566ff"), 19, "../../etc/passwd");
  EXPECT_FALSE(ParseState(text).ok());
}

TEST(StateFileTest, WritesAndReadsAFile) {
  char tmpl[] = "/tmp/sbx_state_test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(WriteStateFile(dir, Sample()).ok());
  auto st = std::filesystem::status(dir + "/state.json");
  EXPECT_EQ(st.permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  absl::StatusOr<PersistedSandbox> out = ReadStateFile(dir);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->id, Sample().id);
  EXPECT_FALSE(ReadStateFile(dir + "/missing").ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sbx::manager
