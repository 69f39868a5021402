// Daemon-wide settings of the manager, filled from sbxd's flags.
#ifndef SBX_SERVER_MANAGER_OPTIONS_H_
#define SBX_SERVER_MANAGER_OPTIONS_H_

#include <cstdint>
#include <map>
#include <string>

#include "server/engine/cgroup.h"
#include "server/manager/types.h"

namespace sbx::manager {

struct ManagerOptions {
  std::string state_dir = "/var/lib/sbx";  // sandboxes live in <state_dir>/sandboxes
  engine::CgroupOptions cgroup;
  std::string init_path;                   // the sbx-init binary
  uint32_t uid_base = 1000000000;          // host uid of slot 0's root
  int max_sandboxes = 1024;
  // Ready sandboxes with the default limits kept for CreateSandbox to hand
  // out, refilled in the background; 0 disables the pool. They come on top
  // of max_sandboxes.
  int pool_size = 0;
  // Appended to every sandbox id ("sb-<hex>.<node>") so that a router can
  // tell which daemon holds a sandbox; "" for a daemon on its own.
  std::string node_name;

  // Limits of a sandbox whose create request leaves them unset.
  int64_t default_memory_bytes = int64_t{512} << 20;
  double default_cpus = 1.0;
  int64_t default_pids = 256;

  int64_t tmp_bytes = int64_t{64} << 20;
  int64_t work_bytes = int64_t{256} << 20;
  int64_t shm_bytes = int64_t{64} << 20;

  // Owner of sandboxes recovered from state files written before tenants
  // existed, and quotas by tenant (tenants not listed have none).
  std::string default_tenant = "local";
  std::map<std::string, TenantQuota> quotas;

  // How long Destroy and the reclaiming of a dead sandbox wait for its
  // cgroup to empty after SIGKILL.
  int kill_timeout_ms = 5000;
};

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_OPTIONS_H_
