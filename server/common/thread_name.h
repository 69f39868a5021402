#ifndef SBX_SERVER_COMMON_THREAD_NAME_H_
#define SBX_SERVER_COMMON_THREAD_NAME_H_

#include <pthread.h>

#include <string>
#include <thread>

namespace sbx {

// Names `thread` for top -H, perf and gdb; the kernel keeps 15 characters.
inline void NameThread(std::thread& thread, const std::string& name) {
  pthread_setname_np(thread.native_handle(), name.substr(0, 15).c_str());
}

}  // namespace sbx

#endif  // SBX_SERVER_COMMON_THREAD_NAME_H_
