#include "s3/fault_client.hpp"

namespace valkyrie::s3 {

fault_client::fault_client(std::shared_ptr<object_client> inner, std::uint64_t seed)
    : inner_(std::move(inner)), rng_(seed) {}

void fault_client::fail_with_probability(double p, std::error_code error) {
  std::lock_guard lock(mu_);
  probability_ = p;
  probability_error_ = error;
}

void fault_client::fail_next(unsigned n, std::error_code error) {
  std::lock_guard lock(mu_);
  fail_next_ = n;
  next_error_ = error;
}

void fault_client::set_delay(std::chrono::milliseconds d) {
  std::lock_guard lock(mu_);
  delay_ = d;
}

awaitable<std::error_code> fault_client::before_call() {
  std::error_code ec;
  std::chrono::milliseconds delay;
  {
    std::lock_guard lock(mu_);
    delay = delay_;
    if (fail_next_ > 0) {
      --fail_next_;
      ec = next_error_;
    } else if (probability_ > 0 &&
               std::uniform_real_distribution<double>(0, 1)(rng_) < probability_) {
      ec = probability_error_;
    }
  }
  if (delay.count() > 0) {
    asio::steady_timer t(co_await asio::this_coro::executor, delay);
    co_await t.async_wait(use_tuple);
  }
  if (ec) injected.fetch_add(1, std::memory_order_relaxed);
  co_return ec;
}

awaitable<result<object_info>> fault_client::head(std::string key) {
  if (auto ec = co_await before_call()) co_return ec;
  co_return co_await inner_->head(std::move(key));
}

awaitable<result<std::size_t>> fault_client::get(std::string key, std::uint64_t offset,
                                                 std::span<char> dest, std::string if_match) {
  if (auto ec = co_await before_call()) co_return ec;
  auto r = co_await inner_->get(std::move(key), offset, dest, std::move(if_match));
  if (r && *r > 0) {
    std::lock_guard lock(mu_);
    if (corrupt_next_ > 0) {
      --corrupt_next_;
      dest[*r / 2] ^= 0x20;
      injected.fetch_add(1, std::memory_order_relaxed);
    }
  }
  co_return r;
}

void fault_client::corrupt_next(unsigned n) {
  std::lock_guard lock(mu_);
  corrupt_next_ = n;
}

awaitable<result<std::string>> fault_client::put_object(std::string key, std::string body,
                                                        bool if_none_match) {
  if (auto ec = co_await before_call()) co_return ec;
  co_return co_await inner_->put_object(std::move(key), std::move(body), if_none_match);
}

awaitable<result<list_page>> fault_client::list(list_request request) {
  if (auto ec = co_await before_call()) co_return ec;
  co_return co_await inner_->list(std::move(request));
}

}  // namespace valkyrie::s3
