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
// Whether `url` can be an http(s) URL at all: "SCHEME://" then only characters RFC 3986 allows
// in a URI. Checked before Boost.URL parses it: Boost 1.81's parse_absolute_uri fails an
// assertion (abort) on "SCHEME:" followed by one character that cannot start a path, such as
// "http:?" or "http: ".
bool plausible_url(std::string_view url);
}  // namespace valkyrie::s3
