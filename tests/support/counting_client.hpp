#pragma once
// counting_client: an object client over another (usually a memory_client) that records every
// GET (key, offset, size, the reactor it was sent from), how many were in flight at once, and
// can fail GETs at a chosen offset. hold_until(n) keeps GETs waiting until n are in flight
// together (or a deadline passes), which tells parallel requests from serial ones without timing.
// Thread-safe: one instance may serve every reactor.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/errors.hpp"
#include "core/reactor_pool.hpp"
#include "s3/object_client.hpp"

namespace valkyrie::test {

class counting_client final : public s3::object_client {
 public:
  struct get_record {
    std::string key;
    std::uint64_t offset = 0;
    std::size_t size = 0;
    int reactor = -1;  // reactor_pool::current() when it was sent
  };

  explicit counting_client(std::shared_ptr<s3::object_client> inner) : inner_(std::move(inner)) {}

  // GETs wait until `n` are in flight at once, for at most `deadline` (then they go anyway).
  void hold_until(unsigned n, std::chrono::milliseconds deadline = std::chrono::seconds(2)) {
    hold_n_ = n;
    hold_deadline_ = deadline;
  }
  // Every GET starting at `offset` fails with `error` (after its hold), `times` times.
  void fail_at(std::uint64_t offset, std::error_code error, unsigned times = ~0u) {
    std::lock_guard lock(mu_);
    fail_offset_ = offset;
    fail_error_ = error;
    fail_times_ = times;
  }

  awaitable<result<s3::object_info>> head(std::string key) override {
    return inner_->head(std::move(key));
  }
  awaitable<result<s3::list_page>> list(s3::list_request request) override {
    return inner_->list(std::move(request));
  }

  awaitable<result<std::size_t>> get(std::string key, std::uint64_t offset, std::span<char> dest,
                                     std::string if_match) override {
    std::error_code injected;
    {
      std::lock_guard lock(mu_);
      records_.push_back({key, offset, dest.size(), reactor_pool::current()});
      if (offset == fail_offset_ && fail_times_ > 0) {
        --fail_times_;
        injected = fail_error_;
      }
    }
    unsigned now = ++in_flight_;
    unsigned seen = max_in_flight_.load();
    while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
    }
    if (hold_n_ > 1) {
      auto give_up = std::chrono::steady_clock::now() + hold_deadline_;
      asio::steady_timer t(co_await asio::this_coro::executor);
      while (max_in_flight_.load() < hold_n_ && std::chrono::steady_clock::now() < give_up) {
        t.expires_after(std::chrono::milliseconds(1));
        co_await t.async_wait(use_tuple);
      }
    }
    result<std::size_t> r(injected);
    if (!injected) r = co_await inner_->get(std::move(key), offset, dest, std::move(if_match));
    --in_flight_;
    co_return r;
  }

  std::vector<get_record> records() const {
    std::lock_guard lock(mu_);
    return records_;
  }
  // GETs by (key, offset).
  std::map<std::pair<std::string, std::uint64_t>, unsigned> gets_by_range() const {
    std::map<std::pair<std::string, std::uint64_t>, unsigned> out;
    for (auto& r : records()) ++out[{r.key, r.offset}];
    return out;
  }
  std::size_t get_count() const {
    std::lock_guard lock(mu_);
    return records_.size();
  }
  void reset() {
    std::lock_guard lock(mu_);
    records_.clear();
    max_in_flight_ = in_flight_.load();
  }
  unsigned max_in_flight() const { return max_in_flight_.load(); }
  unsigned in_flight() const { return in_flight_.load(); }

 private:
  std::shared_ptr<s3::object_client> inner_;
  mutable std::mutex mu_;
  std::vector<get_record> records_;
  std::atomic<unsigned> in_flight_{0}, max_in_flight_{0};
  std::atomic<unsigned> hold_n_{0};
  std::chrono::milliseconds hold_deadline_{2000};
  std::uint64_t fail_offset_ = ~std::uint64_t{0};
  std::error_code fail_error_;
  unsigned fail_times_ = 0;
};

}  // namespace valkyrie::test
