#include "server/engine/wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace sbx::wire {

const char* SetupStepName(uint32_t step) {
  static const char* const kNames[kStepCount] = {
      "ready",          "waiting for the go from sbxd",  "taking root identity",
      "entering a cgroup namespace", "setting the hostname", "bringing up lo",
      "making mounts private", "mounting the root tmpfs", "mounting /usr",
      "building /etc", "mounting /proc", "building /dev",
      "mounting /tmp and /work", "pivot_root", "setting up signals",
      "opening the sandbox directory", "dropping the capability bounding set"};
  return step < kStepCount ? kNames[step] : "unknown step";
}

const char* ExecStepName(uint32_t step) {
  switch (step) {
    case kExecStepFork: return "fork";
    case kExecStepPty: return "opening the terminal";
    case kExecStepSetsid: return "setsid";
    case kExecStepStdio: return "setting up stdio";
    case kExecStepCwd: return "chdir";
    case kExecStepIdentity: return "switching user";
    case kExecStepPrivileges: return "dropping privileges";
    case kExecStepExec: return "exec";
    case kExecStepCgroup: return "joining its cgroup";
    case kExecStepLimits: return "setting its rlimits";
    case kExecStepSeccomp: return "installing the syscall filter";
    case kExecStepSpare: return "handing over to the spare";
    default: return "starting";
  }
}

Writer& Writer::Raw(const void* p, size_t n) {
  buf_.append(static_cast<const char*>(p), n);
  return *this;
}

Writer& Writer::Str(std::string_view s) {
  U32(static_cast<uint32_t>(s.size()));
  buf_.append(s.data(), s.size());
  return *this;
}

Writer& Writer::StrList(const std::vector<std::string>& list) {
  U32(static_cast<uint32_t>(list.size()));
  for (const auto& s : list) Str(s);
  return *this;
}

bool Reader::Raw(void* p, size_t n) {
  if (static_cast<size_t>(end_ - p_) < n) return false;
  std::memcpy(p, p_, n);
  p_ += n;
  return true;
}

bool Reader::Str(std::string* s) {
  uint32_t n;
  if (!U32(&n) || static_cast<size_t>(end_ - p_) < n) return false;
  s->assign(p_, n);
  p_ += n;
  return true;
}

bool Reader::StrList(std::vector<std::string>* list) {
  uint32_t n;
  if (!U32(&n) || n > kMaxMessage) return false;
  list->clear();
  list->reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    std::string s;
    if (!Str(&s)) return false;
    list->push_back(std::move(s));
  }
  return true;
}

std::string EncodeSpawn(const SpawnRequest& r) {
  Writer w(kSpawn);
  w.Str(r.id).Str(r.root_dir).I64(r.tmp_bytes).I64(r.work_bytes).I64(r.shm_bytes);
  w.U32(r.keep_cgroup_ns);
  return w.data();
}

bool DecodeSpawn(Reader& in, SpawnRequest* r) {
  uint32_t keep_cgroup_ns = 0;
  if (!(in.Str(&r->id) && in.Str(&r->root_dir) && in.I64(&r->tmp_bytes) &&
        in.I64(&r->work_bytes) && in.I64(&r->shm_bytes) && in.U32(&keep_cgroup_ns) &&
        in.done() && keep_cgroup_ns <= 1)) {
    return false;
  }
  r->keep_cgroup_ns = keep_cgroup_ns == 1;
  return true;
}

std::string EncodeExec(const ExecRequest& r) {
  Writer w(kExec);
  w.U32(r.uid).U32(r.gid).U32(r.tty).U32(r.rows).U32(r.cols).I64(r.timeout_ms);
  w.I64(r.fsize_bytes).I64(r.stack_bytes).I64(r.open_files).U32(r.cgroup_fds);
  w.U32(r.spare_pid).Str(r.cwd).StrList(r.argv).StrList(r.env);
  // Trailing fields, each only when set, so that a request without them is
  // the one older inits take: the leaf-directory flag, then nproc (which
  // needs the flag before it, 0 or 1).
  if (r.cgroup_dir_first || r.nproc > 0) w.U32(r.cgroup_dir_first ? 1 : 0);
  if (r.nproc > 0) w.I64(r.nproc);
  return w.data();
}

bool DecodeExec(Reader& in, ExecRequest* r) {
  uint32_t tty, rows, cols;
  if (!(in.U32(&r->uid) && in.U32(&r->gid) && in.U32(&tty) && in.U32(&rows) &&
        in.U32(&cols) && in.I64(&r->timeout_ms) && in.I64(&r->fsize_bytes) &&
        in.I64(&r->stack_bytes) && in.I64(&r->open_files) && in.U32(&r->cgroup_fds) &&
        in.U32(&r->spare_pid) && in.Str(&r->cwd) &&
        in.StrList(&r->argv) && in.StrList(&r->env))) {
    return false;
  }
  uint32_t dir_first = 0;
  if (!in.done()) {
    if (!in.U32(&dir_first) || dir_first > 1) return false;
    // A flag of 0 is sent only to make room for nproc.
    if (!in.done() || dir_first == 0) {
      if (!in.I64(&r->nproc) || r->nproc <= 0 || !in.done()) return false;
    }
  }
  // The directory and at least one cgroup.procs file for the fallback.
  r->cgroup_dir_first = dir_first == 1;
  if (r->cgroup_dir_first && r->cgroup_fds < 2) return false;
  r->tty = tty != 0;
  r->rows = static_cast<uint16_t>(rows);
  r->cols = static_cast<uint16_t>(cols);
  return true;
}

std::string EncodeExit(const ExitReport& r) {
  Writer w(kExited);
  w.U32(static_cast<uint32_t>(r.wait_status)).I64(r.wall_us).I64(r.user_us);
  w.I64(r.system_us).I64(r.max_rss_kb).U32(r.timed_out);
  return w.data();
}

bool DecodeExit(Reader& in, ExitReport* r) {
  uint32_t status, timed_out;
  if (!(in.U32(&status) && in.I64(&r->wall_us) && in.I64(&r->user_us) &&
        in.I64(&r->system_us) && in.I64(&r->max_rss_kb) && in.U32(&timed_out) &&
        in.done())) {
    return false;
  }
  r->wait_status = static_cast<int32_t>(status);
  r->timed_out = timed_out != 0;
  return true;
}

int Send(int sock, const std::string& msg, const int* fds, size_t nfds) {
  if (nfds > kMaxFds) return EINVAL;
  struct iovec iov = {const_cast<char*>(msg.data()), msg.size()};
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (nfds > 0) {
    std::memset(control, 0, sizeof(control));
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n) == msg.size() ? 0 : EMSGSIZE;
    if (errno != EINTR) return errno;
  }
}

ssize_t Receive(int sock, std::string* msg, int* fds, size_t* nfds, int flags) {
  *nfds = 0;
  // One buffer per thread for the largest message, allocated once and never
  // cleared: zero-filling 256 KiB for every few-byte message showed in
  // profiles of the exec path (and, in a forked child, faulted it all in).
  thread_local std::unique_ptr<char[]> buffer(new char[kMaxMessage]);
  struct iovec iov = {buffer.get(), kMaxMessage};
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n;
  // ECONNRESET: the peer closed its end with a message of ours unread (an
  // init that reaps a command while sbxd's SIGKILL for it is on its way).
  // The kernel reports that once, ahead of what the peer sent before it
  // closed, which is still queued: the exit report, say. Read on.
  bool reset_seen = false;
  for (;;) {
    n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET && !reset_seen) {
      reset_seen = true;
      continue;
    }
    break;
  }
  if (n < 0) {
    const int err = errno;
    msg->clear();
    return -err;
  }
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* in = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (size_t i = 0; i < count; ++i) {
      if (fds != nullptr && *nfds < kMaxFds) {
        fds[(*nfds)++] = in[i];
      } else {
        ::close(in[i]);
      }
    }
  }
  msg->assign(buffer.get(), static_cast<size_t>(n));
  if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    for (size_t i = 0; i < *nfds; ++i) ::close(fds[i]);
    *nfds = 0;
    msg->clear();
    return -EMSGSIZE;
  }
  return n;
}

uint32_t TypeOf(const std::string& msg) {
  uint32_t type = 0;
  if (msg.size() >= sizeof(type)) std::memcpy(&type, msg.data(), sizeof(type));
  return type;
}

}  // namespace sbx::wire
