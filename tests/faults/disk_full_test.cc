// The state directory's file system fills up: creates fail with a clear
// error (RESOURCE_EXHAUSTED, not UNKNOWN / INTERNAL) and leave nothing half
// made, the existing sandboxes keep working, and once space is freed
// creates work again. The state dir is a small tmpfs the test mounts on its
// own temp dir and unmounts at the end.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fault_util.h"

namespace sbx::faults {
namespace {

class DiskFullTest : public FaultTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(mkdir(daemon_.state_dir().c_str(), 0700), 0) << strerror(errno);
    ASSERT_EQ(mount("tmpfs", daemon_.state_dir().c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                    "size=4m,mode=0700"),
              0)
        << strerror(errno);
    mounted_ = true;
    ASSERT_TRUE(daemon_.Start());
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- sbxd log (tail) ----\n" << daemon_.LogTail(6000) << "\n";
    if (daemon_.running()) {
      for (const auto& id : ListIds(stub())) Destroy(stub(), id);
      EXPECT_TRUE(WaitFor([&] { return StateDirs().empty(); }, seconds(5)))
          << "state left on the tmpfs";
      EXPECT_TRUE(daemon_.Terminate());
    }
    if (mounted_) {
      EXPECT_EQ(umount2(daemon_.state_dir().c_str(), MNT_DETACH), 0) << strerror(errno);
    }
    daemon_.Stop();
  }

  // Writes a file on the state dir's file system until it is full.
  void Fill() {
    const std::string path = daemon_.state_dir() + "/fill";
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << strerror(errno);
    const std::string block(64 << 10, 'f');
    int err = 0;
    while (true) {
      ssize_t n = write(fd, block.data(), block.size());
      if (n < 0) {
        err = errno;
        break;
      }
      if (n == 0) break;
    }
    close(fd);
    ASSERT_EQ(err, ENOSPC) << strerror(err);
  }
  void Free() { ASSERT_EQ(unlink((daemon_.state_dir() + "/fill").c_str()), 0); }

  bool mounted_ = false;
};

TEST_F(DiskFullTest, CreateFailsCleanlyAndRecoversWhenSpaceReturns) {
  v1::Sandbox existing;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &existing).ok());
  const auto cgroups_before = daemon_.CgroupChildren();

  Fill();
  for (int i = 0; i < 3; ++i) {
    v1::Sandbox sb;
    grpc::Status s = Create(stub(), v1::CreateSandboxRequest(), &sb);
    ASSERT_FALSE(s.ok()) << "created " << sb.id() << " on a full disk";
    EXPECT_EQ(s.error_code(), grpc::RESOURCE_EXHAUSTED) << StatusText(s);
    EXPECT_NE(s.error_message().find("space"), std::string::npos) << StatusText(s);
  }
  // Nothing half made.
  EXPECT_EQ(ListIds(stub()), std::vector<std::string>{existing.id()});
  EXPECT_EQ(StateDirs(), std::vector<std::string>{existing.id()});
  EXPECT_EQ(daemon_.CgroupChildren(), cgroups_before);
  {
    std::set<pid_t> in_existing;
    for (pid_t pid : SandboxProcesses(existing.id())) in_existing.insert(pid);
    for (pid_t pid : ProcessesInUidRange()) {
      EXPECT_EQ(in_existing.count(pid), 1u) << "stray sandbox process " << pid;
    }
  }
  // The existing sandbox works on a full state disk.
  ExecResult r = Sh(stub(), existing.id(), "echo still > /work/f; cat /work/f");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "still\n");
  v1::Limits limits;
  limits.set_pids(100);
  grpc::Status s = SetLimits(stub(), existing.id(), limits);
  EXPECT_TRUE(s.ok() || s.error_code() == grpc::RESOURCE_EXHAUSTED) << StatusText(s);
  v1::Sandbox got;
  ASSERT_TRUE(Get(stub(), existing.id(), &got).ok());
  EXPECT_EQ(got.state(), v1::SANDBOX_STATE_RUNNING);

  Free();
  v1::Sandbox fresh;
  s = Create(stub(), v1::CreateSandboxRequest(), &fresh);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  r = RunExec(stub(), MakeStart(fresh.id(), {"echo", "ok"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n");

  // Both survive a restart (their state was written whole).
  ASSERT_TRUE(daemon_.Terminate());
  ASSERT_TRUE(daemon_.Restart());
  v1::ListSandboxesResponse list;
  ASSERT_TRUE(List(stub(), &list).ok());
  EXPECT_EQ(list.sandboxes_size(), 2);
  for (const auto* sb : {&existing, &fresh}) {
    ASSERT_TRUE(Destroy(stub(), sb->id()).ok());
  }
  ExpectNothingLeft();
}

}  // namespace
}  // namespace sbx::faults
