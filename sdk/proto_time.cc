#include "sbx/proto_time.h"

#include <cstdint>

namespace sbx {
namespace {

// The range google.protobuf.Duration allows: +-10000 years.
constexpr int64_t kMaxProtoSeconds = 315'576'000'000;

}  // namespace

google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  google::protobuf::Duration out;
  if (d >= absl::Seconds(kMaxProtoSeconds)) {
    out.set_seconds(kMaxProtoSeconds);
    return out;
  }
  if (d <= absl::Seconds(-kMaxProtoSeconds)) {
    out.set_seconds(-kMaxProtoSeconds);
    return out;
  }
  // Seconds truncate towards zero, so nanos carry the same sign, as the
  // proto requires.
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
  return out;
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t) {
  google::protobuf::Timestamp out;
  const int64_t seconds = absl::ToUnixSeconds(t);
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  return out;
}

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

}  // namespace sbx
