// to_errno: the one place errors become the errnos readers see. Every valkyrie::errc has its
// intended errno here; a code added to core/errors.hpp without one fails the completeness check.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <map>

#include <boost/asio/error.hpp>

#include "core/errors.hpp"
#include "fuse/session.hpp"

using namespace valkyrie;
using valkyrie::fuse::to_errno;

namespace test_errno {
// What a reader should see for each failure, and why.
const std::map<errc, int> intended = {
    {errc::ok, 0},
    {errc::not_found, ENOENT},            // the key is gone
    {errc::no_such_bucket, ENOENT},       // the bucket is gone
    {errc::access_denied, EACCES},        // refused by policy
    {errc::signature_mismatch, EACCES},   // wrong secret key
    {errc::expired_token, EACCES},        // credentials ran out and could not be renewed
    {errc::precondition_failed, ESTALE},  // the object changed under an open file
    {errc::invalid_range, EIO},           // the object is shorter than listed
    {errc::slow_down, EIO},               // throttled past every retry
    {errc::server_error, EIO},            // 5xx past every retry
    {errc::bad_request, EIO},             // a request the server refuses: our bug, not the reader's
    {errc::wrong_region, EIO},            // misconfiguration (caught at start-up)
    {errc::connect_failed, EHOSTUNREACH},  // the endpoint cannot be reached
    {errc::timeout, ETIMEDOUT},            // connect, first byte or a stalled body
    {errc::connection_reset, EIO},         // the transfer broke past every retry
    {errc::truncated_body, EIO},           // fewer bytes than promised
    {errc::protocol_error, EIO},           // an answer that cannot be parsed
    {errc::tls_error, EIO},                // handshake or certificate failure
    {errc::no_credentials, EACCES},        // nothing to sign with
    {errc::cache_full, ENOMEM},            // every chunk pinned or in flight
    {errc::invalid_argument, EINVAL},      // e.g. opening a directory as a file
    {errc::cancelled, EINTR},              // the request was interrupted
    {errc::retries_exhausted, ETIMEDOUT},  // S3 kept failing for the whole --retry-timeout
};

TEST_CASE("every valkyrie error code maps to its intended errno") {
  for (auto [code, want] : intended) {
    std::error_code ec = code;
    CAPTURE(ec.message());
    CHECK(to_errno(ec) == want);
  }
}

TEST_CASE("the table above covers every code of core/errors.hpp, and only errc::ok means success") {
  // Codes are dense from ok (0) to cancelled; the category names each of them.
  const int last = static_cast<int>(errc::retries_exhausted);
  CHECK(intended.size() == static_cast<std::size_t>(last + 1));
  for (int v = 0; v <= last; ++v) {
    std::error_code ec(v, valkyrie_category());
    CAPTURE(v);
    CHECK(intended.count(static_cast<errc>(v)) == 1);
    CHECK(ec.message() != "unknown valkyrie error");
    if (v != 0) CHECK(to_errno(ec) > 0);
  }
  // One past the last: not a known code (a code added to the enum must be added to this test).
  CHECK(std::error_code(last + 1, valkyrie_category()).message() == "unknown valkyrie error");
  // A value the enum does not know still fails cleanly.
  CHECK(to_errno(std::error_code(last + 1, valkyrie_category())) == EIO);
  CHECK(to_errno(std::error_code(9999, valkyrie_category())) == EIO);
}

TEST_CASE("system and generic codes keep their errno; other categories become EIO") {
  CHECK(to_errno(std::error_code()) == 0);
  CHECK(to_errno(std::make_error_code(std::errc::no_such_file_or_directory)) == ENOENT);
  CHECK(to_errno(std::make_error_code(std::errc::not_enough_memory)) == ENOMEM);
  CHECK(to_errno(std::error_code(ECONNREFUSED, std::system_category())) == ECONNREFUSED);
  CHECK(to_errno(std::error_code(EMFILE, std::system_category())) == EMFILE);
  // Asio's socket errors are system codes (they convert to std::system_category on Linux).
  std::error_code refused = boost::system::error_code(boost::asio::error::connection_refused);
  CHECK(to_errno(refused) == ECONNREFUSED);
  std::error_code aborted = boost::system::error_code(boost::asio::error::operation_aborted);
  CHECK(to_errno(aborted) == ECANCELED);
  // Asio's own categories (end of stream, name resolution) and any other library's: EIO.
  std::error_code eof = boost::system::error_code(boost::asio::error::eof);
  CHECK(to_errno(eof) == EIO);
  std::error_code not_found = boost::system::error_code(boost::asio::error::host_not_found);
  CHECK(to_errno(not_found) == EIO);
  CHECK(to_errno(std::make_error_code(std::future_errc::broken_promise)) == EIO);
}
}  // namespace test_errno
