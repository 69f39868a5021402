// server/engine/proc_status: the /proc/<pid>/status fields sbxd reads.
#include "server/engine/proc_status.h"

#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace sbx::engine {
namespace {

TEST(ProcStatusTest, ParsesTheFieldsSbxdUses) {
  const ProcStatus status = ParseProcStatus(
      "Name:\tsbx init (2)\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n"
      "NSpid:\t4242\t17\t2\nPid:\t4242\nPPid:\t4200\n"
      "Uid:\t1900065536\t1900065537\t1900065538\t1900065539\nGid:\t5\t5\t5\t5\n");
  EXPECT_EQ(status.name, "sbx init (2)");
  EXPECT_EQ(status.ppid, 4200);
  EXPECT_EQ(status.ns_pid, 2);  // the innermost namespace's, the last field
  ASSERT_TRUE(status.real_uid.has_value());
  EXPECT_EQ(*status.real_uid, 1900065536u);  // the real uid, not the effective one
}

TEST(ProcStatusTest, MissingOrMalformedFieldsKeepTheirDefaults) {
  const ProcStatus empty = ParseProcStatus("");
  EXPECT_EQ(empty.name, "");
  EXPECT_EQ(empty.ppid, 0);
  EXPECT_EQ(empty.ns_pid, 0);
  EXPECT_FALSE(empty.real_uid.has_value());

  const ProcStatus bad = ParseProcStatus("PPid:\tx\nNSpid:\nUid:\t-1\t0\t0\t0\nName\n");
  EXPECT_EQ(bad.ppid, 0);
  EXPECT_EQ(bad.ns_pid, 0);
  EXPECT_FALSE(bad.real_uid.has_value());
}

TEST(ProcStatusTest, ReadsALiveProcessAndNotAGoneOne) {
  std::optional<ProcStatus> self = ReadProcStatus(::getpid());
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(self->ppid, ::getppid());
  ASSERT_TRUE(self->real_uid.has_value());
  EXPECT_EQ(*self->real_uid, ::getuid());
  EXPECT_FALSE(self->name.empty());

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  EXPECT_FALSE(ReadProcStatus(child).has_value());  // reaped: its /proc entry is gone
}

}  // namespace
}  // namespace sbx::engine
