#include "tier/disk_tier.hpp"

#include <boost/asio/post.hpp>

namespace valkyrie::tier {

disk_tier::disk_tier(std::shared_ptr<disk_store> store, std::shared_ptr<cache::chunk_cache> cache,
                     std::uint64_t write_back_bytes)
    : store_(std::move(store)),
      cache_(std::move(cache)),
      limit_(write_back_bytes),
      queue_limit_(std::max<std::uint64_t>(cache_->capacity(), write_back_bytes)) {}

void disk_tier::start_spill(asio::any_io_executor ex) {
  spill_ex_ = ex;
  std::weak_ptr<disk_tier> weak = shared_from_this();
  cache::chunk_cache::spill_hook hook;
  hook.wants = [weak](const cache::chunk_id& id, std::uint64_t rank) {
    auto self = weak.lock();
    return self && self->spill_wanted(id, rank);
  };
  hook.take = [weak, ex](const cache::chunk_id& id, cache::chunk_ref ref) {
    // (posted: the cache's shard is locked now, and the ref must not be released under it)
    auto held = std::make_shared<cache::chunk_ref>(std::move(ref));
    asio::post(ex, [weak, ex, id, held]() mutable {
      if (auto self = weak.lock())
        asio::co_spawn(ex, self->spill(std::move(id), std::move(held)), asio::detached);
    });
  };
  cache_->set_spill(std::move(hook));
}

cache::chunk_cache::fetch_fn disk_tier::wrap(cache::chunk_id id,
                                             cache::chunk_cache::fetch_fn next) {
  if (!store_->admits(id)) return next;
  return [self = shared_from_this(), id = std::move(id), next = std::move(next)](
             cache::chunk_buffers dest) { return self->fetch(id, next, std::move(dest)); };
}

awaitable<result<std::size_t>> disk_tier::fetch(cache::chunk_id id,
                                                cache::chunk_cache::fetch_fn next,
                                                cache::chunk_buffers dest) {
  auto self = shared_from_this();  // (alive across the co_awaits)
  if (auto hit = co_await store_->read(id, dest)) co_return *hit;
  auto r = co_await next(dest);
  if (!r || *r != id.length()) co_return r;
  // With an order the chunk goes to the disk when memory evicts it (start_spill), if at all.
  if (spill_ex_ && store_->ranked()) co_return r;
  {
    std::lock_guard lock(mu_);
    queued_bytes_ += id.length();
    queue_.push_back(std::move(id));
    while (queued_bytes_ > queue_limit_ && queue_.size() > 1) {
      queued_bytes_ -= queue_.front().length();
      queue_.pop_front();
      store_->count_dropped();
    }
  }
  pump(co_await asio::this_coro::executor);
  co_return r;
}

std::size_t disk_tier::write_back_queued() {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void disk_tier::pump(asio::any_io_executor ex) {
  std::vector<cache::chunk_id> start;
  {
    std::lock_guard lock(mu_);
    while (!queue_.empty()) {
      const std::uint64_t len = queue_.front().length();
      if (in_flight_bytes_ > 0 && in_flight_bytes_ + len > limit_) break;  // (one may always run)
      in_flight_bytes_ += len;
      in_flight_ += len;
      queued_bytes_ -= len;
      start.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  for (auto& id : start) asio::co_spawn(ex, write_back(std::move(id)), asio::detached);
}

awaitable<void> disk_tier::write_back(cache::chunk_id id) {
  auto self = shared_from_this();
  const std::uint64_t len = id.length();
  // (co_spawn starts inline on this reactor, inside the fetch: the chunk becomes ready when the
  // fetch has returned to the cache)
  std::optional<cache::chunk_ref> ref = co_await cache_->pin_when_ready(id);
  if (ref) {
    std::vector<std::span<const char>> pieces = ref->pieces();
    co_await store_->write(id, std::move(pieces));
  } else {
    store_->count_dropped();  // (evicted before its turn)
  }
  done_writing(len);
  pump(co_await asio::this_coro::executor);
}

}  // namespace valkyrie::tier

namespace valkyrie::tier {

bool disk_tier::spill_wanted(const cache::chunk_id& id, std::uint64_t rank) {
  // (outside the order: never needed again as far as anyone knows)
  if (rank == cache::chunk_cache::not_in_order || !store_->ranked() || !store_->admits(id) ||
      store_->contains(id))
    return false;
  const std::uint64_t len = id.length();
  {
    std::lock_guard lock(mu_);
    if (in_flight_bytes_ == 0 || in_flight_bytes_ + len <= limit_) {
      in_flight_bytes_ += len;
      in_flight_ += len;
      return true;
    }
  }
  store_->count_dropped();  // (the write-back is full: memory needs the room now)
  return false;
}

awaitable<void> disk_tier::spill(cache::chunk_id id, std::shared_ptr<cache::chunk_ref> ref) {
  auto self = shared_from_this();
  const std::uint64_t len = id.length();
  {
    std::vector<std::span<const char>> pieces = ref->pieces();
    co_await store_->write(id, std::move(pieces));
  }
  ref.reset();  // (the cache may drop it now)
  done_writing(len);
  pump(co_await asio::this_coro::executor);
}

void disk_tier::done_writing(std::uint64_t len) {
  {
    std::lock_guard lock(mu_);
    in_flight_bytes_ -= len;
  }
  in_flight_ -= len;
}

}  // namespace valkyrie::tier
