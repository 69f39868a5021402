// sbx-init: one small single-threaded binary with two roles.
//
//  * spawner (RunSpawner): started once by sbxd; clones each sandbox's init
//    into fresh namespaces on request. Being tiny and single-threaded, it
//    clones in well under a millisecond, where fork()ing sbxd would copy a
//    large multi-threaded address space.
//  * sandbox init (RunSandboxInit): pid 1 of a sandbox. Builds the root
//    (rootfs.cc), then serves exec requests on its control socket, reaps
//    every process and reports exits.
//
// Nothing here logs: failures are reported to sbxd as {step, errno}.
#ifndef SBX_SERVER_INIT_INIT_H_
#define SBX_SERVER_INIT_INIT_H_

#include "server/engine/wire.h"

namespace sbx::init {

// Serves spawn requests on `channel` until sbxd closes it. Returns the exit code.
int RunSpawner(int channel);

// File descriptors a sandbox init receives from sbxd through the spawner.
struct InitFds {
  int control = -1;  // listening control socket
  int sync = -1;     // read end: one byte from sbxd once maps and cgroup are set
  int ready = -1;    // write end: the SetupReport
  int root_dir = -1; // opened by the init itself: the new root's mount point
};

// Runs in the cloned child; never returns.
[[noreturn]] void RunSandboxInit(const wire::SpawnRequest& request, const InitFds& fds);

// Builds the sandbox's root and pivots into it (rootfs.cc). On failure returns
// the errno and sets `*step`.
int BuildRoot(const wire::SpawnRequest& request, int root_dir, uint32_t* step);

// The exec server loop (init.cc). Never returns.
[[noreturn]] void ServeExecs(int control);

}  // namespace sbx::init

#endif  // SBX_SERVER_INIT_INIT_H_
