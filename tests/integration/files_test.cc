// WriteFiles / ReadFile and `sbx cp` against a real daemon: round trips,
// trees and modes, ownership, the storage cap, bad requests, and every way
// a path could try to leave the sandbox.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "daemon.h"
#include "proc_util.h"
#include "sbx/client.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

constexpr size_t kMiB = 1 << 20;

struct Entry {
  std::string path;
  std::string content;
  uint32_t mode = 0;
  bool is_dir = false;
  std::string symlink_target;
};

Entry File(const std::string& path, const std::string& content, uint32_t mode = 0) {
  Entry e;
  e.path = path;
  e.content = content;
  e.mode = mode;
  return e;
}
Entry Dir(const std::string& path, uint32_t mode = 0) {
  Entry e;
  e.path = path;
  e.mode = mode;
  e.is_dir = true;
  return e;
}
Entry Link(const std::string& path, const std::string& target) {
  Entry e;
  e.path = path;
  e.symlink_target = target;
  return e;
}

struct WriteOutcome {
  grpc::Status status;
  v1::WriteFilesResponse response;
};

// One WriteFiles stream; content in chunks of `chunk` bytes.
WriteOutcome Write(Stub& stub, const std::string& id, const std::vector<Entry>& entries,
                   const std::string& user = "", size_t chunk = kMiB) {
  WriteOutcome out;
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::milliseconds(60000));
  auto writer = stub.WriteFiles(&ctx, &out.response);
  v1::WriteFilesRequest first;
  first.set_sandbox_id(id);
  first.set_user(user);
  bool ok = writer->Write(first);
  for (const Entry& e : entries) {
    if (!ok) break;
    v1::WriteFilesRequest header;
    header.mutable_file()->set_path(e.path);
    header.mutable_file()->set_mode(e.mode);
    header.mutable_file()->set_is_dir(e.is_dir);
    header.mutable_file()->set_symlink_target(e.symlink_target);
    ok = writer->Write(header);
    for (size_t off = 0; ok && off < e.content.size(); off += chunk) {
      v1::WriteFilesRequest data;
      data.set_chunk(e.content.substr(off, chunk));
      ok = writer->Write(data);
    }
  }
  if (ok) writer->WritesDone();
  out.status = writer->Finish();
  return out;
}

// One WriteFiles stream of exactly `messages`, for malformed streams.
grpc::Status WriteMessages(Stub& stub, const std::vector<v1::WriteFilesRequest>& messages) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::milliseconds(10000));
  v1::WriteFilesResponse response;
  auto writer = stub.WriteFiles(&ctx, &response);
  for (const v1::WriteFilesRequest& message : messages) {
    if (!writer->Write(message)) break;
  }
  writer->WritesDone();
  return writer->Finish();
}

WriteOutcome WriteOne(Stub& stub, const std::string& id, const std::string& path,
                      const std::string& content, uint32_t mode = 0,
                      const std::string& user = "") {
  return Write(stub, id, {File(path, content, mode)}, user);
}

struct ReadEntry {
  v1::FileHeader header;
  std::string content;
  int chunks = 0;
  size_t largest_chunk = 0;
};

struct ReadOutcome {
  grpc::Status status;
  std::vector<ReadEntry> entries;
  std::string protocol_error;  // chunk before any header
};

ReadOutcome Read(Stub& stub, const std::string& id, const std::string& path,
                 const std::string& user = "") {
  ReadOutcome out;
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::milliseconds(60000));
  v1::ReadFileRequest req;
  req.set_sandbox_id(id);
  req.set_path(path);
  req.set_user(user);
  auto reader = stub.ReadFile(&ctx, req);
  v1::ReadFileResponse resp;
  while (reader->Read(&resp)) {
    if (resp.has_file()) {
      out.entries.push_back({resp.file(), "", 0, 0});
    } else if (out.entries.empty()) {
      out.protocol_error = "chunk before any header";
    } else {
      out.entries.back().content += resp.chunk();
      out.entries.back().chunks++;
      out.entries.back().largest_chunk =
          std::max(out.entries.back().largest_chunk, resp.chunk().size());
    }
  }
  out.status = reader->Finish();
  return out;
}

std::string Shell(Stub& stub, const std::string& id, const std::string& script,
                const std::string& user = "") {
  ExecOptions options;
  options.user = user;
  ExecResult r = Sh(stub, id, script, options);
  EXPECT_TRUE(r.Ok()) << script << ": " << r.Describe();
  EXPECT_EQ(r.exit ? r.exit->exit_code() : -1, 0) << script << ": " << r.Describe();
  return r.out;
}

// fsuid, supplementary groups and effective capabilities of every sbxd
// thread: all must be sbxd's own again after any transfer.
std::vector<std::string> ThreadCredentials(pid_t pid) {
  std::vector<std::string> out;
  for (const std::string& tid : ListDir("/proc/" + std::to_string(pid) + "/task")) {
    auto status = ReadFile("/proc/" + std::to_string(pid) + "/task/" + tid + "/status");
    if (!status) continue;
    std::string line_set;
    for (const std::string& line : SplitLines(*status)) {
      if (line.rfind("Uid:", 0) == 0 || line.rfind("Gid:", 0) == 0 ||
          line.rfind("Groups:", 0) == 0 || line.rfind("CapEff:", 0) == 0) {
        line_set += line + "|";
      }
    }
    out.push_back(line_set);
  }
  return out;
}

class FilesTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions options;
    options.extra_args = {"--work-size", "16M"};
    StartDaemon(options);
  }
  static void TearDownTestSuite() { StopDaemon(); }

  static std::string HostScratch(const std::string& name) {
    return "/tmp/sbx-files-it-" + std::to_string(getpid()) + "-" + name;
  }
};

TEST_F(FilesTest, LargeFileRoundTripIsExactAndOwnedBySandboxUser) {
  SBX_SANDBOX(sb);
  const std::string data = RandomBytes(5 * kMiB + 123, 42);
  WriteOutcome w = WriteOne(stub(), sb.id(), "big.bin", data);
  ASSERT_TRUE(w.status.ok()) << StatusText(w.status);
  EXPECT_EQ(w.response.files(), 1);
  EXPECT_EQ(w.response.bytes(), static_cast<int64_t>(data.size()));

  ReadOutcome r = Read(stub(), sb.id(), "/work/big.bin");
  ASSERT_TRUE(r.status.ok()) << StatusText(r.status);
  ASSERT_EQ(r.entries.size(), 1u);
  EXPECT_TRUE(r.protocol_error.empty());
  EXPECT_EQ(r.entries[0].header.path(), "/work/big.bin");
  EXPECT_FALSE(r.entries[0].header.is_dir());
  EXPECT_EQ(r.entries[0].header.size(), static_cast<int64_t>(data.size()));
  EXPECT_EQ(r.entries[0].header.mode(), 0644u);
  EXPECT_GT(r.entries[0].chunks, 4);
  EXPECT_LE(r.entries[0].largest_chunk, kMiB);
  EXPECT_EQ(Sha256Hex(r.entries[0].content), Sha256Hex(data));

  // The sandbox sees the same bytes, owned by its user.
  const std::string sum = Shell(stub(), sb.id(), "sha256sum /work/big.bin");
  EXPECT_EQ(sum.substr(0, 64), Sha256Hex(data));
  EXPECT_EQ(Trim(Shell(stub(), sb.id(), "stat -c '%u:%g %a' /work/big.bin")), "1000:1000 644");
}

TEST_F(FilesTest, DirectoryTreeWithModesInAndOut) {
  SBX_SANDBOX(sb);
  WriteOutcome w = Write(stub(), sb.id(),
                         {Dir("tree", 0750), File("tree/a.txt", "alpha\n", 0600),
                          File("tree/sub/b.sh", "#!/bin/sh\necho b\n", 0755),
                          File("tree/sub/deep/c", std::string(300000, 'c'), 0640),
                          Dir("tree/empty", 0700), Link("tree/link", "sub/b.sh")});
  ASSERT_TRUE(w.status.ok()) << StatusText(w.status);
  EXPECT_EQ(w.response.files(), 6);
  EXPECT_EQ(w.response.bytes(), 6 + 17 + 300000);

  EXPECT_EQ(Shell(stub(), sb.id(), "cd /work/tree && find . -printf '%P %m %y %U\\n' | sort"),
            " 750 d 1000\n"
            "a.txt 600 f 1000\n"
            "empty 700 d 1000\n"
            "link 777 l 1000\n"
            "sub 755 d 1000\n"
            "sub/b.sh 755 f 1000\n"
            "sub/deep 755 d 1000\n"
            "sub/deep/c 640 f 1000\n");
  EXPECT_EQ(Shell(stub(), sb.id(), "/work/tree/sub/b.sh"), "b\n");

  ReadOutcome r = Read(stub(), sb.id(), "tree");
  ASSERT_TRUE(r.status.ok()) << StatusText(r.status);
  std::vector<std::string> order;
  std::map<std::string, ReadEntry> by_path;
  for (const ReadEntry& e : r.entries) {
    order.push_back(e.header.path());
    by_path[e.header.path()] = e;
  }
  EXPECT_EQ(order, (std::vector<std::string>{"/work/tree", "a.txt", "empty", "link", "sub",
                                             "sub/b.sh", "sub/deep", "sub/deep/c"}));
  EXPECT_TRUE(by_path["/work/tree"].header.is_dir());
  EXPECT_EQ(by_path["/work/tree"].header.mode(), 0750u);
  EXPECT_EQ(by_path["a.txt"].content, "alpha\n");
  EXPECT_EQ(by_path["a.txt"].header.mode(), 0600u);
  EXPECT_TRUE(by_path["sub/deep"].header.is_dir());
  EXPECT_EQ(by_path["sub/deep/c"].content, std::string(300000, 'c'));
  EXPECT_EQ(by_path["sub/deep/c"].header.mode(), 0640u);
  EXPECT_EQ(by_path["link"].header.symlink_target(), "sub/b.sh");
  EXPECT_TRUE(by_path["link"].content.empty());

  // Writing an existing directory again is fine; a file replaces a file.
  w = Write(stub(), sb.id(), {Dir("tree"), File("tree/a.txt", "new")});
  ASSERT_TRUE(w.status.ok()) << StatusText(w.status);
  EXPECT_EQ(Shell(stub(), sb.id(), "cat /work/tree/a.txt; stat -c ' %a' /work/tree/a.txt"),
            "new 644\n");
}

TEST_F(FilesTest, SetuidAndSetgidBitsAreStripped) {
  SBX_SANDBOX(sb);
  ASSERT_TRUE(WriteOne(stub(), sb.id(), "suid", "x", 06755).status.ok());
  ASSERT_TRUE(Write(stub(), sb.id(), {Dir("sgid-dir", 03775)}).status.ok());
  EXPECT_EQ(Shell(stub(), sb.id(), "stat -c '%a' /work/suid /work/sgid-dir"), "755\n1775\n");
}

TEST_F(FilesTest, RootUserWritesAsSandboxRoot) {
  SBX_SANDBOX(sb);
  ASSERT_TRUE(WriteOne(stub(), sb.id(), "/tmp/by-root", "r", 0, "root").status.ok());
  EXPECT_EQ(Trim(Shell(stub(), sb.id(), "stat -c %u /tmp/by-root")), "0");
  WriteOutcome bad = WriteOne(stub(), sb.id(), "x", "r", 0, "nobody-such");
  EXPECT_EQ(bad.status.error_code(), grpc::INVALID_ARGUMENT) << StatusText(bad.status);
}

TEST_F(FilesTest, PermissionsAreTheSandboxUsers) {
  SBX_SANDBOX(sb);
  // Root inside has no capabilities either: its 0700 directory is its own.
  Shell(stub(), sb.id(), "mkdir -m 700 /tmp/secret && echo s > /tmp/secret/f", "root");
  ReadOutcome r = Read(stub(), sb.id(), "/tmp/secret/f");
  EXPECT_EQ(r.status.error_code(), grpc::PERMISSION_DENIED) << StatusText(r.status);
  WriteOutcome w = WriteOne(stub(), sb.id(), "/tmp/secret/g", "no");
  EXPECT_EQ(w.status.error_code(), grpc::PERMISSION_DENIED) << StatusText(w.status);
  r = Read(stub(), sb.id(), "/tmp/secret/f", "root");
  ASSERT_TRUE(r.status.ok()) << StatusText(r.status);
  EXPECT_EQ(r.entries.at(0).content, "s\n");
  w = WriteOne(stub(), sb.id(), "/work/by-root", "no", 0, "root");
  EXPECT_EQ(w.status.error_code(), grpc::PERMISSION_DENIED) << StatusText(w.status);
  // /root is the sandbox root's 0700 home.
  r = Read(stub(), sb.id(), "/root");
  EXPECT_EQ(r.status.error_code(), grpc::PERMISSION_DENIED) << StatusText(r.status);
}

TEST_F(FilesTest, DotDotAndAbsolutePathsStayInside) {
  SBX_SANDBOX(sb);
  const std::string host_passwd = ReadFile("/etc/passwd").value_or("");
  WriteOutcome w = WriteOne(stub(), sb.id(), "../../etc/passwd", "pwned\n");
  EXPECT_FALSE(w.status.ok());
  EXPECT_TRUE(w.status.error_code() == grpc::PERMISSION_DENIED) << StatusText(w.status);
  EXPECT_EQ(ReadFile("/etc/passwd").value_or(""), host_passwd);

  // Climbing out of /work lands in the sandbox's own /tmp.
  const std::string name = "sbx-files-it-" + std::to_string(getpid()) + "-dotdot";
  w = WriteOne(stub(), sb.id(), "../../../../tmp/" + name, "inside");
  ASSERT_TRUE(w.status.ok()) << StatusText(w.status);
  EXPECT_FALSE(PathExists("/tmp/" + name));
  EXPECT_EQ(Shell(stub(), sb.id(), "cat /tmp/" + name), "inside");

  // The sandbox's /etc/shadow (there is none), never the host's.
  ReadOutcome r = Read(stub(), sb.id(), "/../../../etc/shadow");
  EXPECT_FALSE(r.status.ok());
  EXPECT_TRUE(r.status.error_code() == grpc::NOT_FOUND ||
              r.status.error_code() == grpc::PERMISSION_DENIED)
      << StatusText(r.status);
  r = Read(stub(), sb.id(), "/../../etc/hostname");
  ASSERT_TRUE(r.status.ok()) << StatusText(r.status);
  EXPECT_EQ(Trim(r.entries.at(0).content), sb.id());
}

TEST_F(FilesTest, SymlinksPlantedInsideNeverLeadOut) {
  SBX_SANDBOX(sb);
  Shell(stub(), sb.id(),
      "ln -s / /work/esc && ln -s /proc/1/root /work/p && ln -s /etc/passwd /work/pw && "
      "ln -s ../../../../../tmp /work/up");
  const std::string pwned = HostScratch("pwned");
  const std::string pwned_name = pwned.substr(5);  // without "/tmp/"

  // esc -> / is the sandbox's root.
  WriteOutcome w = WriteOne(stub(), sb.id(), "esc/tmp/" + pwned_name, "x");
  EXPECT_FALSE(PathExists(pwned));
  if (w.status.ok()) {
    EXPECT_EQ(Shell(stub(), sb.id(), "cat " + pwned), "x");
  }
  ReadOutcome r = Read(stub(), sb.id(), "esc/etc/hostname");
  ASSERT_TRUE(r.status.ok()) << StatusText(r.status);
  EXPECT_EQ(Trim(r.entries.at(0).content), sb.id());

  // A relative symlink that climbs too far also stops at the sandbox root.
  w = WriteOne(stub(), sb.id(), "up/" + pwned_name + "-2", "y");
  EXPECT_FALSE(PathExists(pwned + "-2"));
  if (w.status.ok()) {
    EXPECT_EQ(Shell(stub(), sb.id(), "cat " + pwned + "-2"), "y");
  }

  // /proc/<pid>/root is a magic link: refused, in both directions.
  r = Read(stub(), sb.id(), "p/etc/hostname");
  EXPECT_FALSE(r.status.ok());
  EXPECT_TRUE(r.entries.empty());
  w = WriteOne(stub(), sb.id(), "p/tmp/" + pwned_name + "-3", "z");
  EXPECT_FALSE(w.status.ok());
  EXPECT_FALSE(PathExists(pwned + "-3"));

  // Never written through a final symlink.
  const std::string host_passwd = ReadFile("/etc/passwd").value_or("");
  w = WriteOne(stub(), sb.id(), "pw", "pwned");
  EXPECT_EQ(w.status.error_code(), grpc::INVALID_ARGUMENT) << StatusText(w.status);
  EXPECT_EQ(ReadFile("/etc/passwd").value_or(""), host_passwd);

  // Read of a tree reports the links without following them.
  r = Read(stub(), sb.id(), "/work");
  ASSERT_TRUE(r.status.ok()) << StatusText(r.status);
  for (const ReadEntry& e : r.entries) {
    if (e.header.path() == "esc") {
      EXPECT_EQ(e.header.symlink_target(), "/");
    }
    if (e.header.path() == "p") {
      EXPECT_EQ(e.header.symlink_target(), "/proc/1/root");
    }
    EXPECT_EQ(e.header.path().find("esc/"), std::string::npos) << "followed: " << e.header.path();
    EXPECT_EQ(e.header.path().find("p/"), std::string::npos) << "followed: " << e.header.path();
  }

  // Kernel file systems are off limits.
  r = Read(stub(), sb.id(), "/proc/1/environ", "root");
  EXPECT_EQ(r.status.error_code(), grpc::PERMISSION_DENIED) << StatusText(r.status);
  r = Read(stub(), sb.id(), "/proc/self/root/etc/passwd");
  EXPECT_FALSE(r.status.ok());
}

TEST_F(FilesTest, ReadOnlyPlacesRefuseWrites) {
  SBX_SANDBOX(sb);
  const std::string name = "sbx-files-it-" + std::to_string(getpid());
  WriteOutcome w = WriteOne(stub(), sb.id(), "/usr/" + name, "x");
  EXPECT_EQ(w.status.error_code(), grpc::PERMISSION_DENIED) << StatusText(w.status);
  EXPECT_FALSE(PathExists("/usr/" + name));
  w = WriteOne(stub(), sb.id(), "/usr/bin/" + name, "x", 0, "root");
  EXPECT_EQ(w.status.error_code(), grpc::PERMISSION_DENIED) << StatusText(w.status);
  EXPECT_FALSE(PathExists("/usr/bin/" + name));
  w = WriteOne(stub(), sb.id(), "/etc/passwd", "x", 0, "root");
  EXPECT_FALSE(w.status.ok());
  w = Write(stub(), sb.id(), {Dir("/etc/newdir")});
  EXPECT_FALSE(w.status.ok());
  EXPECT_EQ(Shell(stub(), sb.id(), "head -1 /etc/passwd | cut -d: -f1"), "root\n");
}

TEST_F(FilesTest, WorkCapGivesResourceExhaustedAndSandboxRecovers) {
  SBX_SANDBOX(sb);
  WriteOutcome w = WriteOne(stub(), sb.id(), "fill", std::string(24 * kMiB, 'f'));
  EXPECT_EQ(w.status.error_code(), grpc::RESOURCE_EXHAUSTED) << StatusText(w.status);
  EXPECT_NE(w.status.error_message().find("no space left in the sandbox writing /work/fill"),
            std::string::npos)
      << w.status.error_message();
  EXPECT_EQ(Shell(stub(), sb.id(), "rm /work/fill && echo ok > /work/after && cat /work/after"),
            "ok\n");
  ASSERT_TRUE(WriteOne(stub(), sb.id(), "small", "fits").status.ok());
}

TEST_F(FilesTest, BadRequestsGetClearCodes) {
  SBX_SANDBOX(sb);
  WriteOutcome w = WriteOne(stub(), "sb-0000000000000000", "x", "y");
  EXPECT_EQ(w.status.error_code(), grpc::NOT_FOUND) << StatusText(w.status);
  ReadOutcome r = Read(stub(), "sb-0000000000000000", "/etc/hostname");
  EXPECT_EQ(r.status.error_code(), grpc::NOT_FOUND) << StatusText(r.status);
  r = Read(stub(), sb.id(), "nope");
  EXPECT_EQ(r.status.error_code(), grpc::NOT_FOUND) << StatusText(r.status);
  EXPECT_EQ(r.status.error_message(), "no such file in sandbox: /work/nope");

  for (const std::string& path : {std::string(), std::string("a\0b", 3), std::string(5000, 'a'),
                                  std::string(300, 'n')}) {
    w = WriteOne(stub(), sb.id(), path, "y");
    EXPECT_EQ(w.status.error_code(), grpc::INVALID_ARGUMENT) << StatusText(w.status);
    r = Read(stub(), sb.id(), path);
    EXPECT_EQ(r.status.error_code(), grpc::INVALID_ARGUMENT) << StatusText(r.status);
  }

  v1::WriteFilesRequest first;
  first.set_sandbox_id(sb.id());
  v1::WriteFilesRequest orphan_chunk;
  orphan_chunk.set_chunk("orphan");
  grpc::Status s = WriteMessages(stub(), {first, orphan_chunk});  // a chunk before any header
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << StatusText(s);

  v1::WriteFilesRequest header;
  header.mutable_file()->set_path("x");
  s = WriteMessages(stub(), {header});  // the first message without sandbox_id
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << StatusText(s);

  header.mutable_file()->set_path("short");
  header.mutable_file()->set_size(10);
  v1::WriteFilesRequest three_bytes;
  three_bytes.set_chunk("abc");
  s = WriteMessages(stub(), {first, header, three_bytes});  // the announced size not met
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << StatusText(s);
  // A file where a directory is, and the other way round.
  ASSERT_TRUE(Write(stub(), sb.id(), {Dir("d")}).status.ok());
  w = WriteOne(stub(), sb.id(), "d", "x");
  EXPECT_EQ(w.status.error_code(), grpc::FAILED_PRECONDITION) << StatusText(w.status);
  ASSERT_TRUE(WriteOne(stub(), sb.id(), "f", "x").status.ok());
  w = Write(stub(), sb.id(), {Dir("f")});
  EXPECT_EQ(w.status.error_code(), grpc::FAILED_PRECONDITION) << StatusText(w.status);
  w = WriteOne(stub(), sb.id(), "f/under", "x");
  EXPECT_FALSE(w.status.ok());
}

TEST_F(FilesTest, DestroyDuringUploadFailsIt) {
  ScopedSandbox sb(daemon());
  ASSERT_TRUE(sb.status().ok());
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::milliseconds(30000));
  v1::WriteFilesResponse resp;
  auto writer = stub().WriteFiles(&ctx, &resp);
  v1::WriteFilesRequest req;
  req.set_sandbox_id(sb.id());
  ASSERT_TRUE(writer->Write(req));
  req.mutable_file()->set_path("growing");
  ASSERT_TRUE(writer->Write(req));
  req.set_chunk(std::string(64 << 10, 'g'));
  ASSERT_TRUE(writer->Write(req));
  // Destroyed only once sbxd is writing the file: before that, the upload
  // would find no sandbox (NOT_FOUND), which is not what this is about.
  ASSERT_TRUE(WaitFor(
      [&] {
        ReadOutcome r = Read(stub(), sb.id(), "growing");
        return r.status.ok() && r.entries.size() == 1 && r.entries[0].content.size() >= (64 << 10);
      },
      std::chrono::seconds(10)))
      << "the first chunk never reached the file";
  ASSERT_TRUE(Destroy(stub(), sb.id()).ok());
  for (int i = 0; i < 64 && writer->Write(req); ++i) {
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION) << StatusText(s);
}

TEST_F(FilesTest, AbortedTransfersLeakNothing) {
  SBX_SANDBOX(sb);
  ASSERT_TRUE(WriteOne(stub(), sb.id(), "big", std::string(8 * kMiB, 'b')).status.ok());
  const std::vector<std::string> creds = ThreadCredentials(daemon().pid());
  ASSERT_FALSE(creds.empty());
  const int fds_before = ProcFdCount(daemon().pid());

  for (int round = 0; round < 3; ++round) {
    {  // a reader that goes away after the first chunk
      grpc::ClientContext ctx;
      v1::ReadFileRequest req;
      req.set_sandbox_id(sb.id());
      req.set_path("big");
      auto reader = stub().ReadFile(&ctx, req);
      v1::ReadFileResponse resp;
      ASSERT_TRUE(reader->Read(&resp));
      ASSERT_TRUE(reader->Read(&resp));
      ctx.TryCancel();
      while (reader->Read(&resp)) {
      }
      (void)reader->Finish();
    }
    {  // a writer that goes away in the middle of a file
      grpc::ClientContext ctx;
      v1::WriteFilesResponse resp;
      auto writer = stub().WriteFiles(&ctx, &resp);
      v1::WriteFilesRequest req;
      req.set_sandbox_id(sb.id());
      writer->Write(req);
      req.mutable_file()->set_path("partial-" + std::to_string(round));
      writer->Write(req);
      req.set_chunk(std::string(100000, 'p'));
      writer->Write(req);
      // Cancel once the server has the file open (the first chunk is in).
      EXPECT_TRUE(WaitFor(
          [&] {
            ExecResult r = Sh(stub(), sb.id(), "test -s /work/partial-" + std::to_string(round));
            return r.Ok() && r.exit->exit_code() == 0;
          },
          seconds(10)));
      ctx.TryCancel();
      (void)writer->Finish();
    }
  }
  EXPECT_TRUE(WaitFor([&] { return ProcFdCount(daemon().pid()) <= fds_before; }, seconds(10)))
      << "sbxd fds: " << fds_before << " before, " << ProcFdCount(daemon().pid()) << " after";
  // Every thread is back to sbxd's own credentials.
  for (const std::string& c : ThreadCredentials(daemon().pid())) EXPECT_EQ(c, creds[0]);
  // The sandbox still works; the partial files stay (as documented).
  EXPECT_EQ(Shell(stub(), sb.id(), "ls /work"), "big\npartial-0\npartial-1\npartial-2\n");
}

TEST_F(FilesTest, SdkWritesReadsAndCopiesOut) {
  SBX_SANDBOX(sb);
  absl::StatusOr<sbx::Client> client = sbx::Client::Connect(daemon().address());
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<sbx::FileToWrite> files(4);
  files[0].path = "sdk";
  files[0].is_dir = true;
  files[1].path = "sdk/main.py";
  files[1].content = "print('hi')\n";
  files[2].path = "sdk/run";
  files[2].content = "#!/bin/sh\npython3 /work/sdk/main.py\n";
  files[2].mode = 0755;
  files[3].path = "sdk/latest";
  files[3].symlink_target = "main.py";
  absl::StatusOr<sbx::WriteResult> written = client->WriteFiles(sb.id(), files);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->files, 4);
  EXPECT_EQ(written->bytes, static_cast<int64_t>(files[1].content.size() + files[2].content.size()));
  EXPECT_EQ(Shell(stub(), sb.id(), "/work/sdk/run"), "hi\n");

  absl::StatusOr<std::string> content = client->ReadFile(sb.id(), "sdk/latest");
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, "print('hi')\n");
  content = client->ReadFile(sb.id(), "sdk");
  EXPECT_EQ(content.status().code(), absl::StatusCode::kFailedPrecondition) << content.status();
  content = client->ReadFile(sb.id(), "missing");
  EXPECT_EQ(content.status().code(), absl::StatusCode::kNotFound) << content.status();
  sbx::TransferOptions as_bad_user;
  as_bad_user.user = "not-a-user";
  EXPECT_EQ(client->ReadFile(sb.id(), "sdk/run", as_bad_user).status().code(),
            absl::StatusCode::kInvalidArgument);

  char tmpl[] = "/tmp/sbx-files-sdk-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string local = tmpl;
  absl::StatusOr<sbx::TransferResult> copied =
      client->CopyOut(sb.id(), "/work/sdk", local + "/out");
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(copied->files, 4);
  EXPECT_EQ(ReadFile(local + "/out/run").value_or(""), files[2].content);
  struct stat st;
  ASSERT_EQ(lstat((local + "/out/latest").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  RemoveTree(local);
}

class FilesCliTest : public FilesTest {
 protected:
  void SetUp() override {
    FilesTest::SetUp();
    ASSERT_STRNE(SBX_CLI_PATH, "") << "the `sbx` CLI target does not exist in this build";
    char tmpl[] = "/tmp/sbx-files-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) RemoveTree(dir_);
    FilesTest::TearDown();
  }
  static ProcessResult Sbx(std::vector<std::string> args, const std::string& stdin_data = "") {
    args.insert(args.begin(), {SBX_CLI_PATH, "--server", daemon().address()});
    return RunProcess(args, stdin_data, seconds(60));
  }
  static void WriteLocal(const std::string& path, const std::string& content, mode_t mode) {
    std::ofstream(path, std::ios::binary) << content;
    chmod(path.c_str(), mode);
  }
  static std::string Mode(const std::string& path) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return "missing";
    char buf[8];
    snprintf(buf, sizeof buf, "%o", st.st_mode & 07777);
    return buf;
  }
  std::string dir_;
};

TEST_F(FilesCliTest, CopiesFilesAndTreesBothWays) {
  SBX_SANDBOX(sb);
  const std::string data = RandomBytes(700000, 7);
  WriteLocal(dir_ + "/file.bin", data, 0640);
  ProcessResult r = Sbx({"cp", dir_ + "/file.bin", sb.id() + ":/work/in.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(Shell(stub(), sb.id(), "sha256sum < /work/in.bin").substr(0, 64), Sha256Hex(data));
  EXPECT_EQ(Trim(Shell(stub(), sb.id(), "stat -c %a /work/in.bin")), "640");

  r = Sbx({"cp", sb.id() + ":in.bin", dir_ + "/out.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(ReadFile(dir_ + "/out.bin").value_or(""), data);
  EXPECT_EQ(Mode(dir_ + "/out.bin"), "640");

  // A tree, with a read-only directory and a symlink.
  ASSERT_EQ(mkdir((dir_ + "/src").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir_ + "/src/sub").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((dir_ + "/src/ro").c_str(), 0755), 0);
  WriteLocal(dir_ + "/src/top.txt", "top\n", 0644);
  WriteLocal(dir_ + "/src/sub/run.sh", "#!/bin/sh\necho run\n", 0755);
  WriteLocal(dir_ + "/src/ro/frozen", "ice\n", 0444);
  ASSERT_EQ(chmod((dir_ + "/src/ro").c_str(), 0555), 0);
  ASSERT_EQ(symlink("sub/run.sh", (dir_ + "/src/link").c_str()), 0);
  r = Sbx({"cp", dir_ + "/src", sb.id() + ":/work/tree"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(Shell(stub(), sb.id(), "cd /work/tree && find . -printf '%P %m %y\\n' | sort"),
            " 755 d\n"
            "link 777 l\n"
            "ro 555 d\n"
            "ro/frozen 444 f\n"
            "sub 755 d\n"
            "sub/run.sh 755 f\n"
            "top.txt 644 f\n");
  EXPECT_EQ(Shell(stub(), sb.id(), "/work/tree/link"), "run\n");

  r = Sbx({"cp", sb.id() + ":/work/tree", dir_ + "/back"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(ReadFile(dir_ + "/back/top.txt").value_or(""), "top\n");
  EXPECT_EQ(ReadFile(dir_ + "/back/ro/frozen").value_or(""), "ice\n");
  EXPECT_EQ(Mode(dir_ + "/back/ro"), "555");
  EXPECT_EQ(Mode(dir_ + "/back/sub/run.sh"), "755");
  char target[64] = {};
  ASSERT_GT(readlink((dir_ + "/back/link").c_str(), target, sizeof target - 1), 0);
  EXPECT_STREQ(target, "sub/run.sh");
  chmod((dir_ + "/back/ro").c_str(), 0755);  // so that TearDown can remove it
  chmod((dir_ + "/src/ro").c_str(), 0755);

  // Into an existing local directory: under the remote name.
  r = Sbx({"cp", sb.id() + ":/work/in.bin", dir_ + "/back"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(ReadFile(dir_ + "/back/in.bin").value_or(""), data);

  // stdin and stdout.
  r = Sbx({"cp", "-", sb.id() + ":piped.txt"}, "through a pipe\n");
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  r = Sbx({"cp", sb.id() + ":/work/piped.txt", "-"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "through a pipe\n");
}

TEST_F(FilesCliTest, ErrorsAreReported) {
  SBX_SANDBOX(sb);
  ProcessResult r = Sbx({"cp", sb.id() + ":/work/missing", dir_ + "/x"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("no such file in sandbox: /work/missing"), std::string::npos) << r.err;
  r = Sbx({"cp", dir_ + "/a", dir_ + "/b"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  r = Sbx({"cp", sb.id() + ":a", sb.id() + ":b"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
}

}  // namespace
}  // namespace sbx::it
