#include "tier/shared_tier.hpp"

#include <boost/asio/post.hpp>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/reactor_pool.hpp"
#include "s3/parallel_get.hpp"
#include "tier/shared_format.hpp"
#include "tier/shared_metrics.hpp"

namespace valkyrie::tier {

namespace {
using s3::part_list;

// Every ranged GET of `parts` at once on this reactor; the error (a 404 over any other: the
// object is simply not there), else how many parts came short (not 0: the object is shorter
// than the identity says).
awaitable<result<std::size_t>> get_all(s3::object_client* client, std::string key,
                                       part_list parts) {
  auto r = co_await s3::get_parts(client, std::move(key), "", std::move(parts));
  if (r.not_found) co_return make_error_code(errc::not_found);
  if (r.first_error) co_return r.first_error;
  co_return r.short_parts;
}
}  // namespace

shared_tier::shared_tier(shared_options opts,
                         std::vector<std::shared_ptr<s3::object_client>> clients,
                         std::shared_ptr<cache::chunk_cache> cache)
    : opts_(std::move(opts)),
      clients_(std::move(clients)),
      cache_(std::move(cache)),
      next_backoff_(opts_.backoff) {}

std::string shared_tier::object_key(const cache::chunk_id& id) const {
  return shared_chunk_key(opts_.prefix, opts_.origin, id);
}

s3::object_client& shared_tier::client() {
  int r = reactor_pool::current();
  return *clients_[r >= 0 && static_cast<std::size_t>(r) < clients_.size() ? r : 0];
}

bool shared_tier::backing_off() const {
  std::lock_guard lock(mu_);
  return std::chrono::steady_clock::now() < aside_until_;
}

std::size_t shared_tier::write_back_pending() {
  std::lock_guard lock(mu_);
  return queue_.size() + in_flight_;
}

void shared_tier::failed(std::error_code ec, const char* what, const std::string& key) {
  counts_.errors.fetch_add(1, std::memory_order_relaxed);
  detail::shared_metrics::get().errors.add();
  bool stepping_aside = false;
  std::chrono::milliseconds pause{0};
  {
    std::lock_guard lock(mu_);
    if (++error_streak_ >= opts_.errors_before_backoff) {
      pause = next_backoff_;
      aside_until_ = std::chrono::steady_clock::now() + pause;
      next_backoff_ = std::min(next_backoff_ * 2, opts_.max_backoff);
      error_streak_ = 0;
      stepping_aside = true;
    }
  }
  log::limited(
      "tier", spdlog::level::warn, "shared-error", "shared cache request failed; the origin serves",
      {{"operation", what}, {"key", key}, {"error", ec.message()}}, 1, std::chrono::seconds(60));
  if (stepping_aside)
    log::limited(
        "tier", spdlog::level::warn, "shared-aside", "shared cache failing: stepping aside",
        {{"seconds", std::chrono::duration<double>(pause).count()}}, 1, std::chrono::seconds(60));
}

void shared_tier::succeeded() {
  std::lock_guard lock(mu_);
  error_streak_ = 0;
  if (std::chrono::steady_clock::now() >= aside_until_) next_backoff_ = opts_.backoff;
}

cache::chunk_cache::fetch_fn shared_tier::wrap(cache::chunk_id id,
                                               cache::chunk_cache::fetch_fn next,
                                               std::size_t part) {
  return [self = shared_from_this(), id = std::move(id), next = std::move(next),
          part](cache::chunk_buffers dest) { return self->fetch(id, next, part, std::move(dest)); };
}

awaitable<result<std::size_t>> shared_tier::fetch(cache::chunk_id id,
                                                  cache::chunk_cache::fetch_fn next,
                                                  std::size_t part, cache::chunk_buffers dest) {
  auto self = shared_from_this();  // (alive across the co_awaits)
  auto& m = detail::shared_metrics::get();
  const bool aside = backing_off();
  if (!aside && co_await read(id, part, dest)) {
    counts_.hits.fetch_add(1, std::memory_order_relaxed);
    counts_.bytes_read.fetch_add(id.length(), std::memory_order_relaxed);
    m.hits.add();
    m.bytes_read.add(id.length());
    co_return id.length();
  }
  counts_.misses.fetch_add(1, std::memory_order_relaxed);
  m.misses.add();
  auto r = co_await next(dest);
  if (!r || *r != id.length()) co_return r;
  if (backing_off()) {
    counts_.writes_dropped.fetch_add(1, std::memory_order_relaxed);
    m.writes_dropped.add();
  } else {
    queue_store(std::move(id), co_await asio::this_coro::executor);
  }
  co_return r;
}

awaitable<bool> shared_tier::read(cache::chunk_id id, std::size_t part, cache::chunk_buffers dest) {
  const std::uint64_t len = id.length();
  std::uint64_t room = 0;
  for (auto& d : dest) room += d.size();
  if (len == 0 || room < len) co_return false;
  const std::string key = object_key(id);
  const std::size_t hsize = shared_header_size(opts_.origin, id);
  std::vector<char> head;
  std::vector<std::span<const char>> data;  // the chunk's bytes in dest, for the checks
  result<std::size_t> got = std::size_t{1};
  if (len <= opts_.small_chunk) {
    // A small chunk: header and data in one GET, the data copied into the cache's memory.
    head.resize(hsize + len);
    part_list whole;
    whole.emplace_back(0, std::span<char>(head));
    got = co_await get_all(&client(), key, std::move(whole));
    if (got && *got == 0) {
      std::size_t at = hsize;
      for (auto& d : dest) {
        std::size_t n = std::min<std::uint64_t>(d.size(), hsize + len - at);
        std::memcpy(d.data(), head.data() + at, n);
        data.emplace_back(d.data(), n);
        at += n;
      }
      head.resize(hsize);
    }
  } else {
    // The header beside the data: the data in ranged GETs of `part` straight into dest.
    head.resize(hsize);
    part_list parts;
    parts.emplace_back(0, std::span<char>(head));
    std::uint64_t at = 0;
    for (auto& d : dest) {
      std::uint64_t n = std::min<std::uint64_t>(d.size(), len - at);
      for (std::uint64_t p = 0; p < n; p += part)
        parts.emplace_back(hsize + at + p, d.subspan(p, std::min<std::uint64_t>(part, n - p)));
      if (n > 0) data.emplace_back(d.data(), n);
      at += n;
    }
    got = co_await get_all(&client(), key, std::move(parts));
  }
  if (!got) {
    if (got.error() != errc::not_found)
      failed(got.error(), "GET", key);
    else
      succeeded();
    co_return false;
  }
  succeeded();
  shared_check c = *got == 0 ? check_shared_chunk(head, opts_.origin, id, data, opts_.mac_key)
                             : shared_check::bad_length;
  if (c != shared_check::ok) {
    counts_.check_failures.fetch_add(1, std::memory_order_relaxed);
    detail::shared_metrics::get().check_failures.add();
    log::limited("tier", spdlog::level::warn, "shared-check",
                 "shared cache chunk rejected; the origin serves",
                 {{"key", key}, {"check", to_string(c)}});
    co_return false;
  }
  co_return true;
}

void shared_tier::queue_store(cache::chunk_id id, asio::any_io_executor ex) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(id));
    detail::shared_metrics::get().write_back_pending.add();
    if (queue_.size() > opts_.max_queued) {
      queue_.pop_front();  // the oldest: under pressure, stores are what gives way
      detail::shared_metrics::get().write_back_pending.sub();
      counts_.writes_dropped.fetch_add(1, std::memory_order_relaxed);
      detail::shared_metrics::get().writes_dropped.add();
    }
  }
  pump(ex);
}

void shared_tier::pump(asio::any_io_executor ex) {
  std::vector<cache::chunk_id> start;
  {
    std::lock_guard lock(mu_);
    while (!queue_.empty()) {
      const std::uint64_t len = queue_.front().length();
      if (in_flight_bytes_ > 0 && in_flight_bytes_ + len > opts_.write_back_bytes)
        break;  // (one may always run)
      in_flight_bytes_ += len;
      ++in_flight_;
      start.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  for (auto& id : start) asio::co_spawn(ex, store(std::move(id)), asio::detached);
}

awaitable<void> shared_tier::store(cache::chunk_id id) {
  auto self = shared_from_this();
  auto& m = detail::shared_metrics::get();
  const std::uint64_t len = id.length();
  // (co_spawn starts inline on this reactor: let the fetch return and the chunk become ready)
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  std::optional<cache::chunk_ref> ref;
  if (!backing_off()) ref = cache_->pin_ready(id);
  if (ref) {
    std::vector<std::span<const char>> pieces = ref->pieces();
    std::string body = shared_header(opts_.origin, id, pieces, opts_.mac_key);
    body.reserve(body.size() + len);
    for (auto& p : pieces) body.append(p.data(), p.size());
    ref.reset();  // (the copy is made: the cache may evict it)
    const std::string key = object_key(id);
    auto r = co_await client().put_object(key, std::move(body), true);
    if (r) {
      succeeded();
      counts_.puts.fetch_add(1, std::memory_order_relaxed);
      counts_.bytes_written.fetch_add(len, std::memory_order_relaxed);
      m.puts.add();
      m.bytes_written.add(len);
    } else if (r.error() == errc::precondition_failed) {
      succeeded();
      counts_.puts_deduplicated.fetch_add(1, std::memory_order_relaxed);
      m.puts_deduplicated.add();
    } else {
      failed(r.error(), "PUT", key);
      counts_.writes_dropped.fetch_add(1, std::memory_order_relaxed);
      m.writes_dropped.add();
    }
  } else {
    counts_.writes_dropped.fetch_add(1,
                                     std::memory_order_relaxed);  // (evicted first, or backing off)
    m.writes_dropped.add();
  }
  {
    std::lock_guard lock(mu_);
    in_flight_bytes_ -= len;
    --in_flight_;
  }
  m.write_back_pending.sub();
  pump(co_await asio::this_coro::executor);
}

}  // namespace valkyrie::tier
