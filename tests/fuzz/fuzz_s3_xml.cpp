// Fuzz target: S3's XML answers as the client parses them (src/s3/xml.*): ListObjectsV2 pages
// (keys and prefixes percent-decoded under EncodingType=url, sizes, dates) and error documents
// mapped to the project's errors. Invariants: a truncated page always carries a continuation
// token (the lister would otherwise loop or stop early), and any error document maps to an error.
#include "fuzz.hpp"
#include "s3/xml.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  using namespace valkyrie::s3;
  if (auto page = parse_list_response(body)) {
    FUZZ_CHECK(!page->truncated || !page->next_continuation_token.empty(), body);
    for (auto& o : page->objects) (void)o.key.size();
  }
  auto err = parse_error_body(body);
  for (unsigned status : {200u, 301u, 307u, 400u, 403u, 404u, 412u, 416u, 500u, 503u, 999u})
    FUZZ_CHECK(static_cast<bool>(error_from_response(status, err)), err.code);
  return 0;
}
