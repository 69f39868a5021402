// Conversions between absl time types and google.protobuf Duration /
// Timestamp, as used by the sbx.v1 messages.
#ifndef SBX_PROTO_TIME_H_
#define SBX_PROTO_TIME_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace sbx {

// Saturates at the proto's range; an infinite duration maps to its maximum.
google::protobuf::Duration ToProtoDuration(absl::Duration d);
absl::Duration FromProtoDuration(const google::protobuf::Duration& d);

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t);
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t);

}  // namespace sbx

#endif  // SBX_PROTO_TIME_H_
