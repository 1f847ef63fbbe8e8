#pragma once
// ListObjectsV2 semantics over a sorted key -> object map: prefix, delimiter (common prefixes
// rolled up), start-after, continuation and max-keys, exactly as S3 pages them. Shared by the
// in-memory client and the simulator so both answer like S3.
#include <map>
#include <string>

#include "s3/types.hpp"

namespace valkyrie::s3 {
list_page paginate(const std::map<std::string, object_info>& objects, const list_request& request);
}  // namespace valkyrie::s3
