#include "server/manager/state_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

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

// Whether the init takes a task limit is kept; a file from before the field
// reads as an init that does not.
TEST(StateFileTest, InitTakesTaskLimitIsKept) {
  PersistedSandbox in = Sample();
  const std::string without = SerializeState(in);
  EXPECT_EQ(without.find("init_takes_nproc"), std::string::npos);
  absl::StatusOr<PersistedSandbox> out = ParseState(without);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FALSE(out->init_takes_nproc);
  in.init_takes_nproc = true;
  out = ParseState(SerializeState(in));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->init_takes_nproc);
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

// A scratch directory, removed with what is in it.
class StateDir {
 public:
  StateDir() {
    char tmpl[] = "/tmp/sbx_state_test.XXXXXX";
    if (mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~StateDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

PersistedSandbox Numbered(uint64_t seq, int64_t pids) {
  PersistedSandbox s = Sample();
  s.seq = seq;
  s.limits.pids = pids;
  return s;
}

TEST(StateFileTest, TheFirstWriteMakesBothSlotsOwnerOnly) {
  StateDir dir;
  ASSERT_FALSE(dir.path().empty());
  ASSERT_TRUE(WriteStateFile(dir.path(), Numbered(1, 10)).ok());
  for (const char* name : {"state.0", "state.1"}) {
    auto st = std::filesystem::status(dir.File(name));
    ASSERT_TRUE(std::filesystem::exists(st)) << name;
    EXPECT_EQ(st.permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
        << name;
  }
  EXPECT_EQ(std::filesystem::file_size(dir.File("state.0")), 0u);
  // Whole pages, so that a rewrite never reads the old ones back first.
  const uintmax_t size = std::filesystem::file_size(dir.File("state.1"));
  EXPECT_GT(size, 0u);
  EXPECT_EQ(size % 4096, 0u) << size;
  absl::StatusOr<PersistedSandbox> out = ReadStateFile(dir.path());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->id, Sample().id);
  EXPECT_EQ(out->seq, 1u);
  EXPECT_EQ(*out->limits.pids, 10);
  EXPECT_EQ(ReadStateFile(dir.File("missing")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(WriteStateFile(dir.path(), Numbered(0, 10)).code(), absl::StatusCode::kInternal);
}

TEST(StateFileTest, WritesTakeTurnsAndTheLatestIsRead) {
  StateDir dir;
  ASSERT_FALSE(dir.path().empty());
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    ASSERT_TRUE(WriteStateFile(dir.path(), Numbered(seq, 100 + seq)).ok()) << seq;
    absl::StatusOr<PersistedSandbox> out = ReadStateFile(dir.path());
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->seq, seq);
    EXPECT_EQ(*out->limits.pids, static_cast<int64_t>(100 + seq));
  }
  // Slot 1 holds write 5; slot 0 still holds write 4.
  EXPECT_NE(ReadAll(dir.File("state.1")).find("\"seq\": 5"), std::string::npos);
  EXPECT_NE(ReadAll(dir.File("state.0")).find("\"seq\": 4"), std::string::npos);
}

TEST(StateFileTest, AShorterRewriteOverALongerOneIsReadWhole) {
  StateDir dir;
  ASSERT_FALSE(dir.path().empty());
  PersistedSandbox big = Numbered(1, 1);
  big.env["BIG"] = std::string(20000, 'x');  // several pages
  ASSERT_TRUE(WriteStateFile(dir.path(), big).ok());
  ASSERT_TRUE(WriteStateFile(dir.path(), Numbered(2, 2)).ok());
  ASSERT_TRUE(WriteStateFile(dir.path(), Numbered(3, 3)).ok());  // over `big`'s pages
  absl::StatusOr<PersistedSandbox> out = ReadStateFile(dir.path());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->seq, 3u);
  EXPECT_EQ(out->env, Sample().env);
}

TEST(StateFileTest, ATornWriteLeavesThePreviousState) {
  StateDir dir;
  ASSERT_FALSE(dir.path().empty());
  ASSERT_TRUE(WriteStateFile(dir.path(), Numbered(1, 11)).ok());
  ASSERT_TRUE(WriteStateFile(dir.path(), Numbered(2, 22)).ok());
  const std::string whole = ReadAll(dir.File("state.0"));
  // Cut short, or a value in the JSON changed: either way slot 0 (write 2)
  // is not valid, and write 1 is read.
  for (const std::string& torn :
       {whole.substr(0, whole.find("\"seq\"")),
        std::string(whole).replace(whole.find("\"pids\": 22"), 11, "\"pids\": 99")}) {
    WriteAll(dir.File("state.0"), torn);
    absl::StatusOr<PersistedSandbox> out = ReadStateFile(dir.path());
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->seq, 1u);
    EXPECT_EQ(*out->limits.pids, 11);
  }
  // The retry of write 2 goes to the same slot, and is read again.
  ASSERT_TRUE(WriteStateFile(dir.path(), Numbered(2, 23)).ok());
  absl::StatusOr<PersistedSandbox> out = ReadStateFile(dir.path());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out->limits.pids, 23);
}

TEST(StateFileTest, NoValidSlotIsAnError) {
  StateDir dir;
  ASSERT_FALSE(dir.path().empty());
  ASSERT_TRUE(WriteStateFile(dir.path(), Numbered(1, 1)).ok());
  // A valid legacy file does not stand in for slots that are there but bad.
  WriteAll(dir.File("state.json"), SerializeState(Sample()));
  const std::string slot = ReadAll(dir.File("state.1"));
  for (const std::string& bad :
       {std::string("\x00\xff{not a slot", 13), std::string("sbx-state 10 zz\n{}"),
        std::string("sbx-state 999999 0000000000000000\n{}"), slot.substr(0, 40)}) {
    WriteAll(dir.File("state.1"), bad);
    EXPECT_EQ(ReadStateFile(dir.path()).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  // A whole slot in the wrong file (write 1 belongs in state.1).
  WriteAll(dir.File("state.0"), slot);
  WriteAll(dir.File("state.1"), "");
  EXPECT_EQ(ReadStateFile(dir.path()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StateFileTest, ALegacyFileIsReadWhenThereAreNoSlots) {
  StateDir dir;
  ASSERT_FALSE(dir.path().empty());
  PersistedSandbox legacy = Sample();
  WriteAll(dir.File("state.json.prev"), SerializeState(legacy));
  absl::StatusOr<PersistedSandbox> out = ReadStateFile(dir.path());
  ASSERT_TRUE(out.ok()) << out.status();  // stopped between a rewrite's renames
  EXPECT_EQ(out->seq, 0u);
  legacy.image = "newer";
  WriteAll(dir.File("state.json"), SerializeState(legacy));
  out = ReadStateFile(dir.path());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->image, "newer");
  WriteAll(dir.File("state.json"), "{");
  EXPECT_EQ(ReadStateFile(dir.path()).status().code(), absl::StatusCode::kInvalidArgument);
  // The first write after an upgrade makes the slots, which are read from
  // then on.
  legacy.seq = 1;
  legacy.image = "slots";
  ASSERT_TRUE(WriteStateFile(dir.path(), legacy).ok());
  out = ReadStateFile(dir.path());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->image, "slots");
}

}  // namespace
}  // namespace sbx::manager
