#include "server/common/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/status.h"
#include "server/common/unique_fd.h"

namespace sbx {

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", path));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("reading ", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status WriteStringToFile(const std::string& path, absl::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", path));
  ssize_t n;
  do {
    n = ::write(fd.get(), content.data(), content.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return ErrnoStatus(errno, absl::StrCat("writing '", content, "' to ", path));
  }
  if (static_cast<size_t>(n) != content.size()) {
    return absl::InternalError(absl::StrCat("short write to ", path));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view content,
                                 int mode, Durability durability) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("creating ", tmp));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::unlink(tmp.c_str());
      return ErrnoStatus(err, absl::StrCat("writing ", tmp));
    }
    done += static_cast<size_t>(n);
  }
  if (durability == Durability::kSync && ::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, absl::StrCat("syncing ", tmp));
  }
  fd.reset();
  const std::string prev = absl::StrCat(path, ".prev");
  if (durability == Durability::kNoSync && ::rename(path.c_str(), prev.c_str()) != 0 &&
      errno != ENOENT) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, absl::StrCat("renaming ", path, " to ", prev));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    if (durability == Durability::kNoSync) (void)::rename(prev.c_str(), path.c_str());
    return ErrnoStatus(err, absl::StrCat("renaming ", tmp, " to ", path));
  }
  if (durability == Durability::kNoSync) ::unlink(prev.c_str());
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileWrittenAtomically(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (text.ok() || text.status().code() != absl::StatusCode::kNotFound) return text;
  absl::StatusOr<std::string> prev = ReadFileToString(absl::StrCat(path, ".prev"));
  return prev.ok() ? prev : text;
}

absl::StatusOr<int64_t> ReadInt64File(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseInt64(text, path);
}

absl::StatusOr<int64_t> ParseInt64(absl::string_view text, const std::string& path) {
  int64_t value;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value)) {
    return absl::InternalError(absl::StrCat("unexpected content in ", path, ": '",
                                            absl::StripAsciiWhitespace(text), "'"));
  }
  return value;
}

}  // namespace sbx
