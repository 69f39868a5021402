#include "server/api/shutdown.h"

#include <grpc/grpc.h>
#include <grpcpp/support/server_interceptor.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "server/api/log.h"
#include "server/api/reactor_order.h"

namespace sbx::api {
namespace {

constexpr char kServicePrefix[] = "/sbx.v1.SandboxService/";
// Bounds the wait for the loop to run what the ended calls posted.
constexpr absl::Duration kLoopFlushLimit = absl::Seconds(2);
constexpr absl::Duration kCancelRepeat = absl::Milliseconds(20);
// How long connections get to close by themselves once no call is left.
constexpr absl::Duration kFlushGrace = absl::Milliseconds(100);
constexpr absl::Duration kSettleAfterCutOff = absl::Milliseconds(200);

grpc::Status ShuttingDown() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "sbxd is shutting down");
}

}  // namespace

grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* context) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ShuttingDown());
  return reactor;
}
grpc::ServerBidiReactor<v1::ExecRequest, v1::ExecResponse>* RefuseExec() {
  return new RefusingReactor<grpc::ServerBidiReactor<v1::ExecRequest, v1::ExecResponse>>(
      ShuttingDown());
}
grpc::ServerReadReactor<v1::WriteFilesRequest>* RefuseWriteFiles() {
  return new RefusingReactor<grpc::ServerReadReactor<v1::WriteFilesRequest>>(ShuttingDown());
}
grpc::ServerWriteReactor<v1::ReadFileResponse>* RefuseReadFile() {
  return new RefusingReactor<grpc::ServerWriteReactor<v1::ReadFileResponse>>(ShuttingDown());
}

struct GracefulShutdown::Counter {
  absl::Mutex mu;
  int in_flight ABSL_GUARDED_BY(mu) = 0;
};

// Lives as long as its call: gRPC makes one per call and deletes it with
// the call.
class GracefulShutdown::Interceptor final : public grpc::experimental::Interceptor {
 public:
  explicit Interceptor(std::shared_ptr<Counter> counter) : counter_(std::move(counter)) {
    absl::MutexLock lock(&counter_->mu);
    ++counter_->in_flight;
  }
  ~Interceptor() override {
    absl::MutexLock lock(&counter_->mu);
    --counter_->in_flight;
  }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  std::shared_ptr<Counter> counter_;
};

class GracefulShutdown::Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(std::shared_ptr<Counter> counter) : counter_(std::move(counter)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const char* method = info->method();
    if (method == nullptr || std::string(method).rfind(kServicePrefix, 0) != 0) return nullptr;
    return new Interceptor(counter_);
  }

 private:
  std::shared_ptr<Counter> counter_;
};

GracefulShutdown::GracefulShutdown(absl::Duration grace)
    : grace_(grace), counter_(std::make_shared<Counter>()) {}

GracefulShutdown::~GracefulShutdown() = default;

void GracefulShutdown::Install(
    grpc::ServerBuilder& builder,
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> more) {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<Factory>(counter_));
  for (auto& creator : more) creators.push_back(std::move(creator));
  builder.experimental().SetInterceptorCreators(std::move(creators));
}

int GracefulShutdown::InFlight() const {
  absl::MutexLock lock(&counter_->mu);
  return counter_->in_flight;
}

void GracefulShutdown::Run(grpc::Server& server, IoLoop& loop) {
  const absl::Time deadline = absl::Now() + grace_;
  closing_.store(true);
  const int at_start = InFlight();
  Log().info("shutdown: refusing new calls; {} call(s) in flight get up to {}", at_start,
             absl::FormatDuration(grace_));
  bool drained;
  {
    absl::MutexLock lock(&counter_->mu);
    drained = counter_->mu.AwaitWithDeadline(
        absl::Condition(
            +[](Counter* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu) { return c->in_flight == 0; },
            counter_.get()),
        deadline);
  }
  if (!drained) {
    Log().warn("shutdown: grace of {} over; cancelling {} call(s)", absl::FormatDuration(grace_),
               InFlight());
  }
  // Closes the listeners and sends every connection a GOAWAY. Shutdown then
  // waits for the connections to go, which a client that saw the GOAWAY
  // closes. Cancelling the calls drops the connections at once, and with
  // them what the transports had not written yet: the last messages and
  // status of calls that just ended (a client then saw "Broken pipe").
  // So when every call ended in time, the connections get kFlushGrace to
  // close by themselves first. Cancelling is repeated until Shutdown
  // returns, since the first may come before it began.
  const absl::Duration flush = drained ? kFlushGrace : absl::ZeroDuration();
  absl::Notification shut;
  std::thread shutdown([&server, &shut, flush] {
    server.Shutdown(absl::ToChronoTime(absl::Now() + flush));
    shut.Notify();
  });
  if (!shut.WaitForNotificationWithTimeout(flush)) {
    do {
      grpc_server_cancel_all_calls(server.c_server());
    } while (!shut.WaitForNotificationWithTimeout(kCancelRepeat));
  }
  shutdown.join();
  server.Wait();
  // Posted tasks run in order: once this one runs, what the ended calls
  // posted (a cancelled Exec's kill of its command) has run.
  // After a cut-off, the killed commands' exits come in on the loop; they
  // get a moment for that. (Their cgroup leaves go on the manager's worker,
  // which finishes its queue when the manager shuts down.)
  const absl::Duration settle = drained ? absl::ZeroDuration() : kSettleAfterCutOff;
  auto flushed = std::make_shared<absl::Notification>();
  loop.Post([&loop, flushed, settle] {
    loop.AddTimer(absl::Now() + settle, [flushed] { flushed->Notify(); });
  });
  if (!flushed->WaitForNotificationWithTimeout(kLoopFlushLimit)) {
    Log().warn("shutdown: the exec loop did not run its last tasks within {}",
               absl::FormatDuration(kLoopFlushLimit));
  }
}

}  // namespace sbx::api
