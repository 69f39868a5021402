// server/common: errno mapping, status context and the file helpers.
#include <cerrno>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "tests/unit/fake_cgroupfs.h"

namespace sbx {
namespace {

using ::sbx::testing::PutFile;
using ::sbx::testing::ReadFile;
using ::sbx::testing::TempDir;
using ::testing::HasSubstr;

TEST(ErrnoStatusTest, MapsCodesAndKeepsContext) {
  EXPECT_EQ(ErrnoStatus(ENOENT, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoStatus(ENODEV, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoStatus(EADDRINUSE, "x").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrnoStatus(EEXIST, "x").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrnoStatus(EACCES, "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus(EBUSY, "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrnoStatus(EAGAIN, "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus(EIO, "x").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ErrnoStatus(ENOENT, "opening /nope").message(),
            "opening /nope: No such file or directory");
}

TEST(AnnotateTest, PrefixesMessageKeepsCodeAndLeavesOkAlone) {
  absl::Status s = Annotate(absl::NotFoundError("gone"), "reading x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "reading x: gone");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
}

TEST(FileUtilTest, ReadsWritesAndParsesIntegers) {
  TempDir tmp;
  const std::string path = tmp.path() + "/n";
  PutFile(path, "  42\n");
  absl::StatusOr<int64_t> n = ReadInt64File(path);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 42);
  ASSERT_TRUE(WriteStringToFile(path, "-7").ok());
  EXPECT_EQ(ReadFile(path).substr(0, 2), "-7");
  PutFile(path, "max\n");
  EXPECT_EQ(ReadInt64File(path).status().code(), absl::StatusCode::kInternal);
}

TEST(FileUtilTest, WriteNeedsAnExistingFileAndNamesIt) {
  TempDir tmp;
  const std::string path = tmp.path() + "/absent";
  absl::Status s = WriteStringToFile(path, "1");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(path));
  EXPECT_EQ(ReadFileToString(path).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sbx
