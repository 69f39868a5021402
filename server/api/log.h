// The api layer's logger ("api"), cloned from the default logger on first
// use so it shares sbxd's sinks and level.
#ifndef SBX_SERVER_API_LOG_H_
#define SBX_SERVER_API_LOG_H_

#include <spdlog/spdlog.h>

namespace sbx::api {

spdlog::logger& Log();

}  // namespace sbx::api

#endif  // SBX_SERVER_API_LOG_H_
