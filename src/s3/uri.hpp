#pragma once
// URI encoding as S3 and SigV4 define it: unreserved characters (A-Z a-z 0-9 - . _ ~) stay,
// every other byte becomes %XX (upper-case hex). Object keys keep '/' in paths; query values
// encode it.
#include <string>
#include <string_view>

namespace valkyrie::s3 {
std::string uri_encode(std::string_view in, bool keep_slash);
// Percent-decoding; '+' is left alone (S3's encoding-type=url never produces it for spaces).
// Returns false on a malformed escape.
bool uri_decode(std::string_view in, std::string& out);
}  // namespace valkyrie::s3
