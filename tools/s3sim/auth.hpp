#pragma once
// The simulator's authentication: SigV4 verification with the accepted long-term credentials
// (--credentials, plus any added through /_sim/credentials), and S3 Express One Zone sessions for
// directory buckets (names ending "--x-s3").
//
// Directory buckets, as S3 Express does it: CreateSession (GET /?session) and HEAD of the bucket
// are signed with long-term credentials for the service "s3express"; every other request must
// carry x-amz-s3session-token (signed) and be signed with that session's keys, for the service
// "s3express". Other buckets accept sessions too (a request with x-amz-s3session-token is checked
// as one). A session belongs to one bucket and expires after --session-lifetime. Refusals:
// 403 AccessDenied (no, unknown or another bucket's token; x-amz-security-token instead),
// 403 ExpiredToken (an expired session), 403 SignatureDoesNotMatch (wrong secret or service).
//
// Without --credentials nothing is verified (CreateSession is answered all the same).
// Thread-safe.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "protocol.hpp"
#include "s3/sigv4.hpp"

namespace valkyrie::sim {

class authenticator {
 public:
  // expired: counts the requests refused for an expired session.
  authenticator(std::string region, std::optional<s3::credentials> credentials,
                std::chrono::nanoseconds session_lifetime, std::atomic<std::uint64_t>* expired);

  bool enabled() const { return enabled_; }
  // Adds an accepted set; like STS, older sets stay valid until their own expiration.
  void accept(s3::credentials c);
  // nullopt: the request may proceed; else the refusal to send.
  std::optional<reply> check(const request_t& req, const parsed_target& t) const;
  // The CreateSessionResult for a new session on `bucket` (checked by check() before).
  reply create_session(const std::string& bucket);

 private:
  struct session {
    std::string bucket, access_key_id, secret;
    std::chrono::system_clock::time_point expiration;
  };
  std::optional<s3::credentials> long_term(const std::string& access_key_id) const;
  std::optional<reply> verify(const request_t& req, const parsed_target& t,
                              const s3::parsed_authorization& auth,
                              const std::string& secret) const;
  std::optional<reply> check_session(const request_t& req, const parsed_target& t,
                                     const s3::parsed_authorization& auth) const;
  std::string random_text(std::size_t n, const char* alphabet);

  std::string region_;
  bool enabled_;
  std::chrono::nanoseconds session_lifetime_;
  mutable std::mutex mu_;
  std::vector<s3::credentials> accepted_;
  std::map<std::string, session> sessions_;  // by token
  std::mt19937_64 rng_{std::random_device{}()};
  std::atomic<std::uint64_t>* expired_;
};

}  // namespace valkyrie::sim
