#pragma once
// parallel_list: one ListObjectsV2 listing (a prefix, optionally a delimiter) fetched as many
// concurrent page requests instead of one continuation chain, by splitting the key space with
// start-after. Needs no knowledge of the key distribution:
//
// - The whole range (after nothing, up to the end of the prefix) is listed from its first page.
// - A page that is truncated and whose items all fall inside its range leaves the interval
//   (last item, range end]. It is cut at points extrapolated from the page itself: a page of
//   1,000 items spanning the key distance w suggests the next 1,000 span about w again, so the
//   points are last + w * (1, 2, ..., 8, 16, 32, ...) (linear, then doubling, so that a long
//   tail is reached in a few steps). The first piece continues with the page's continuation
//   token; the others start after their point. A piece stops at the first item past its end.
//   A piece found dense is cut again the same way, so a directory of P pages is listed in
//   about log(P) round trips; a cluster of keys costs at most one fan-out of empty pieces.
// - Keys are positions in base 0xD7E0 over the code points U+0020..U+D7FF after their common
//   prefix. Cut points are made only of such code points (plus a real common prefix), so they
//   are valid UTF-8, and every server orders them against any key the same way (UTF-8 binary
//   order as S3, code point order, or UTF-16 order as JavaScript servers): pieces never overlap
//   or leave gaps whatever the server's collation.
// - Results are sorted and deduplicated (a common prefix can appear in two pieces).
//
// Threading: runs on the calling coroutine's executor; the client is used only from there.
// Errors: the first failing page fails the whole listing (nothing partial is returned).
#include <cstdint>
#include <functional>
#include <string>

#include "core/asio.hpp"
#include "core/result.hpp"
#include "s3/object_client.hpp"
#include "s3/types.hpp"

namespace valkyrie::s3 {

struct parallel_list_options {
  unsigned max_in_flight = 16;  // LIST requests at once
  unsigned fanout = 16;         // pieces a dense range is cut into (at most)
};

struct parallel_list_stats {
  std::uint64_t requests = 0;  // LIST requests sent
  std::uint64_t splits = 0;    // ranges cut into pieces
  std::uint64_t pieces = 0;    // ranges listed
};

// Receives the items of every page that fall inside its piece, in no particular order across
// pieces (sorted within a page). Items may repeat (common prefixes): the receiver deduplicates.
using list_sink = std::function<void(list_page& page)>;

// Streams the listing of `request` (prefix, delimiter, max_keys; its continuation token and
// start-after must be empty) into `sink`. Keeps at most one page per request in flight.
awaitable<std::error_code> parallel_list_into(object_client& client, list_request request, list_sink sink,
                                              parallel_list_options opts = {},
                                              parallel_list_stats* stats = nullptr);

// The whole listing as one page: objects sorted by key, common prefixes sorted, no repeats,
// truncated = false.
awaitable<result<list_page>> parallel_list(object_client& client, list_request request,
                                           parallel_list_options opts = {}, parallel_list_stats* stats = nullptr);

// Exposed for tests: cut points strictly between `last` and `end` ("" = no end), extrapolated
// from a page that spanned [first, last]; strictly increasing.
std::vector<std::string> cut_points(const std::string& first, const std::string& last, const std::string& end,
                                    unsigned count);

}  // namespace valkyrie::s3
