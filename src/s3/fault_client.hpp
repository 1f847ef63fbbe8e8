#pragma once
// fault_client: wraps another object client and makes calls fail, by probability or for the
// next N calls, with a chosen error, optionally after a delay. Lets the cache and fs layers be
// tested against S3's bad days without a network. Thread-safe.
#include <atomic>
#include <memory>
#include <mutex>
#include <random>

#include "s3/object_client.hpp"

namespace valkyrie::s3 {

class fault_client final : public object_client {
 public:
  explicit fault_client(std::shared_ptr<object_client> inner, std::uint64_t seed = 1);

  // Every call fails with `error` with this probability (0 disables).
  void fail_with_probability(double p, std::error_code error);
  // The next n calls fail with `error`.
  void fail_next(unsigned n, std::error_code error);
  // Every call waits this long before it is answered.
  void set_delay(std::chrono::milliseconds d);

  awaitable<result<object_info>> head(std::string key) override;
  awaitable<result<std::size_t>> get(std::string key, std::uint64_t offset, std::span<char> dest,
                                     std::string if_match) override;
  awaitable<result<list_page>> list(list_request request) override;
  awaitable<result<std::string>> put_object(std::string key, std::string body, bool if_none_match) override;
  // The next n successful GETs have one byte of what they return flipped (a corrupt body).
  void corrupt_next(unsigned n);

  std::atomic<std::uint64_t> injected{0};

 private:
  // Returns the error to inject for this call, if any, after the configured delay.
  awaitable<std::error_code> before_call();

  std::shared_ptr<object_client> inner_;
  std::mutex mu_;
  std::mt19937_64 rng_;
  double probability_ = 0;
  std::error_code probability_error_;
  unsigned fail_next_ = 0;
  std::error_code next_error_;
  std::chrono::milliseconds delay_{0};
  unsigned corrupt_next_ = 0;
};

}  // namespace valkyrie::s3
