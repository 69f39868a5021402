// Umbrella header of the sbx C++ SDK.
#ifndef SBX_SBX_H_
#define SBX_SBX_H_

#include "sbx/client.h"       // IWYU pragma: export
#include "sbx/grpc_status.h"  // IWYU pragma: export
#include "sbx/proto_time.h"   // IWYU pragma: export
#include "sbx/units.h"        // IWYU pragma: export
#include "sbx/version.h"      // IWYU pragma: export

#endif  // SBX_SBX_H_
