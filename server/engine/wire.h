// The messages sbxd exchanges with sbx-init (spawner and sandbox init), over
// SOCK_SEQPACKET sockets: one datagram per message, file descriptors passed
// with SCM_RIGHTS. Plain C++ without abseil, because sbx-init links it and is
// kept small.
//
// A message is a uint32 type followed by fields appended in a fixed order by
// Writer and read back in the same order by Reader (little-endian host order:
// both ends run on the same machine, built from the same source).
#ifndef SBX_SERVER_ENGINE_WIRE_H_
#define SBX_SERVER_ENGINE_WIRE_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sbx::wire {

// Largest message: bounds argv + env of an exec request.
inline constexpr size_t kMaxMessage = 256 * 1024;
inline constexpr size_t kMaxFds = 8;

enum MsgType : uint32_t {
  // sbxd -> spawner. fds: [control listen socket, sync read end, ready write end]
  kSpawn = 1,
  // spawner -> sbxd. kSpawned: pid; fds: [pidfd]. kSpawnFailed: errno.
  kSpawned = 2,
  kSpawnFailed = 3,
  // sbxd -> init. kExec fds: [stdin read, stdout write, stderr write] (none
  // in tty mode), then `cgroup_fds` cgroup.procs files to join.
  kExec = 10,
  kSignal = 11,
  kPing = 12,
  // sbxd -> init: fork the spare, a child that joins the cgroup leaf of the
  // next command ahead of time (fds: that leaf's cgroup.procs files) and
  // waits for it. Joining a cgroup can cost an RCU grace period on the
  // host (milliseconds), which this takes off the exec path. A spare
  // already there is replaced. Answered at once with kPrepared (pid, and
  // 1: the spare is still joining its leaf), so that the next command can
  // be handed to it already; then, on the same connection, kSpareSettled
  // once it is in its leaf or has been handed a command, or kExecFailed if
  // it died first. (An init from before this answered kPrepared with the
  // pid alone, once the spare was in its leaf.)
  //
  // Its one field, a PrepareMode, says what the fds are; a message without
  // it is kPrepareJoin. With kPrepareCloneInto the init forks the spare
  // straight into the leaf (clone3 with CLONE_INTO_CGROUP), which waits for
  // no grace period, and answers 2 in place of 1; where the kernel refuses
  // that, it falls back to joining. sbxd sends it only to inits it spawned
  // itself with keep_cgroup_ns (older ones would take the directory for a
  // cgroup.procs file).
  kPrepare = 13,
  // init -> sbxd. kStarted: pid; fds: [pty master] in tty mode.
  kStarted = 20,
  kExecFailed = 21,
  kExited = 22,
  kPong = 23,
  kPrepared = 24,
  kSpareSettled = 25,
  // init -> spare: run this command. Fields: pty name ("" without a
  // terminal), then the kExec message. fds: [error pipe write end, stdin,
  // stdout, stderr] (the last three not in tty mode).
  kSpareRun = 30,
  // spare -> init: in the leaf (or failed to join it: the command it runs
  // reports that), ready for kSpareRun.
  kSpareReady = 31,
};

// The fds of a kPrepare message.
enum PrepareMode : uint32_t {
  // The leaf's cgroup.procs files (1 to kMaxFds): the spare joins it.
  kPrepareJoin = 0,
  // The leaf's directory, then its cgroup.procs files for the fallback.
  kPrepareCloneInto = 1,
};
// What kPrepared says after the pid.
inline constexpr uint32_t kSpareJoining = 1;
inline constexpr uint32_t kSpareBornInLeaf = 2;

// Steps of a sandbox init's set-up, reported on the ready pipe with errno.
enum SetupStep : uint32_t {
  kStepReady = 0,
  kStepSync,
  kStepIdentity,
  kStepCgroupNs,
  kStepHostname,
  kStepLoopback,
  kStepMountPrivate,
  kStepRootfs,
  kStepUsr,
  kStepEtc,
  kStepProc,
  kStepDev,
  kStepScratch,
  kStepPivotRoot,
  kStepSignals,
  kStepRootDir,
  kStepBoundingSet,
  kStepCount,
};
const char* SetupStepName(uint32_t step);

// What the init writes on the ready pipe: step == kStepReady on success.
struct SetupReport {
  uint32_t step;
  int32_t err;
};

// Steps of starting one command, reported in kExecFailed.
enum ExecStep : uint32_t {
  kExecStepFork = 1,
  kExecStepPty,
  kExecStepSetsid,
  kExecStepStdio,
  kExecStepCwd,
  kExecStepIdentity,
  kExecStepPrivileges,
  kExecStepExec,
  kExecStepSeccomp,
  kExecStepCgroup,
  kExecStepLimits,
  // spare_pid was given but the init has no such spare (never prepared,
  // replaced, or dead): sbxd starts the command the ordinary way instead.
  kExecStepSpare,
};
const char* ExecStepName(uint32_t step);

struct SpawnRequest {
  std::string id;         // hostname
  std::string root_dir;   // host directory to build the new root on
  int64_t tmp_bytes = 0;
  int64_t work_bytes = 0;
  int64_t shm_bytes = 0;
  // The init stays in sbxd's cgroup namespace rather than making one at its
  // leaf: on a cgroup2 mount with nsdelegate the kernel lets a process start
  // children only in cgroups its own namespace sees (kPrepareCloneInto).
  // Its commands still make theirs, at their leaf.
  bool keep_cgroup_ns = false;
};

struct ExecRequest {
  uint32_t uid = 0, gid = 0;
  bool tty = false;
  uint16_t rows = 24, cols = 80;
  int64_t timeout_ms = 0;
  int64_t fsize_bytes = 0, stack_bytes = 0, open_files = 0;  // 0: default
  uint32_t cgroup_fds = 0;
  // The first of the cgroup_fds is the leaf's directory: the init starts the
  // command there (clone3 with CLONE_INTO_CGROUP); the rest are the leaf's
  // cgroup.procs files, joined only if the kernel refuses that. Sent (as a
  // trailing field) only to inits spawned with keep_cgroup_ns; one from
  // before it would refuse the request.
  bool cgroup_dir_first = false;
  // Nonzero: run in the spare with this pid (see kPrepare), which is in its
  // cgroup leaf already; cgroup_fds is then 0. Naming the spare keeps
  // sbxd's idea of which leaf holds the command exact: if the init's spare
  // is another one (or none), the exec fails with kExecStepSpare.
  uint32_t spare_pid = 0;
  // Nonzero: the command's RLIMIT_NPROC (soft and hard), derived from the
  // sandbox's pids limit, so that a fork past that limit fails before the
  // kernel copies the parent's address space (see ApplyRlimits in the init).
  // A trailing field too, sent only to inits spawned by this version.
  int64_t nproc = 0;
  std::string cwd;
  std::vector<std::string> argv;
  std::vector<std::string> env;
};

struct ExitReport {
  int32_t wait_status = 0;
  int64_t wall_us = 0, user_us = 0, system_us = 0, max_rss_kb = 0;
  bool timed_out = false;
};

class Writer {
 public:
  explicit Writer(MsgType type) { U32(type); }
  Writer& U32(uint32_t v) { return Raw(&v, sizeof(v)); }
  Writer& I64(int64_t v) { return Raw(&v, sizeof(v)); }
  Writer& Str(std::string_view s);
  Writer& StrList(const std::vector<std::string>& list);
  const std::string& data() const { return buf_; }

 private:
  Writer& Raw(const void* p, size_t n);
  std::string buf_;
};

class Reader {
 public:
  Reader(const char* data, size_t size) : p_(data), end_(data + size) {}
  explicit Reader(const std::string& s) : Reader(s.data(), s.size()) {}
  bool U32(uint32_t* v) { return Raw(v, sizeof(*v)); }
  bool I64(int64_t* v) { return Raw(v, sizeof(*v)); }
  bool Str(std::string* s);
  bool StrList(std::vector<std::string>* list);
  bool done() const { return p_ == end_; }

 private:
  bool Raw(void* p, size_t n);
  const char* p_;
  const char* end_;
};

std::string EncodeSpawn(const SpawnRequest& r);
bool DecodeSpawn(Reader& in, SpawnRequest* r);
std::string EncodeExec(const ExecRequest& r);
bool DecodeExec(Reader& in, ExecRequest* r);
std::string EncodeExit(const ExitReport& r);
bool DecodeExit(Reader& in, ExitReport* r);

// Sends one datagram with `nfds` descriptors. Returns 0 or an errno value.
int Send(int sock, const std::string& msg, const int* fds = nullptr, size_t nfds = 0);

// Receives one datagram. Received descriptors (close-on-exec) are stored in
// `fds` (up to kMaxFds) and counted in `*nfds`. Returns the message size, 0
// at end of stream, or -errno. A truncated message or descriptor list is an
// error (-EMSGSIZE) and its descriptors are closed. A peer that closed with
// messages of ours unread still has its own read first, then end of stream.
ssize_t Receive(int sock, std::string* msg, int* fds, size_t* nfds, int flags = 0);

// Type of a received message (0 if too short).
uint32_t TypeOf(const std::string& msg);

}  // namespace sbx::wire

#endif  // SBX_SERVER_ENGINE_WIRE_H_
