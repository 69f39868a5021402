// The manager layer's logger ("manager"), cloned from the default logger on
// first use so it shares sbxd's sinks and level.
#ifndef SBX_SERVER_MANAGER_LOG_H_
#define SBX_SERVER_MANAGER_LOG_H_

#include <spdlog/spdlog.h>

namespace sbx::manager {

spdlog::logger& Log();

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_LOG_H_
