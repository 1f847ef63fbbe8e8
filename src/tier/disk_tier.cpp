#include "tier/disk_tier.hpp"

#include <boost/asio/post.hpp>

namespace valkyrie::tier {

disk_tier::disk_tier(std::shared_ptr<disk_store> store, std::shared_ptr<cache::chunk_cache> cache,
                     std::uint64_t write_back_bytes)
    : store_(std::move(store)),
      cache_(std::move(cache)),
      limit_(write_back_bytes),
      queue_limit_(std::max<std::uint64_t>(cache_->capacity(), write_back_bytes)),
      hold_limit_(std::max<std::uint64_t>(write_back_bytes, cache_->capacity() / 4)),
      pin_limit_(std::max<std::uint64_t>(write_back_bytes, cache_->capacity() / 2)),
      evict_hold_(std::min<std::uint64_t>(
          write_back_bytes,
          std::max<std::uint64_t>(cache_->capacity() / 8, cache_->chunk_size()))) {}

void disk_tier::start_spill(asio::any_io_executor ex) {
  spill_ex_ = ex;
  std::weak_ptr<disk_tier> weak = shared_from_this();
  cache::chunk_cache::spill_hook hook;
  hook.wants = [weak](const cache::chunk_id& id, std::uint64_t rank, bool ahead) {
    auto self = weak.lock();
    return self ? self->spill_wanted(id, rank, ahead) : cache::chunk_cache::spill_answer::no;
  };
  hook.on_disk = [weak](const cache::chunk_id& id) {
    auto self = weak.lock();
    return self && self->store_->contains(id);
  };
  // The next victims already on the disk: an eighth of the cache (a burst: a file read ahead).
  hook.ahead_bytes = cache_->capacity() / 8;
  hook.take = [weak, ex](const cache::chunk_id& id, cache::chunk_ref ref, bool ahead) {
    // (posted: the cache's shard is locked now, and the ref must not be released under it.
    // Moved in, not copied: the handler may run and finish on another reactor before this
    // returns, and a copy left here would then be the last, released under the lock.)
    auto held = std::make_shared<cache::chunk_ref>(std::move(ref));
    asio::post(ex, [weak, id, held = std::move(held), ahead]() mutable {
      if (auto self = weak.lock()) self->spill_taken({std::move(id), std::move(held), ahead});
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

void disk_tier::set_order_bytes(std::uint64_t bytes) {
  const bool fits =
      bytes > 0 && bytes <= std::uint64_t{store_->slots()} * store_->chunk_size();
  std::lock_guard lock(mu_);
  order_fits_ = fits;
}

disk_tier::pin_peaks disk_tier::spill_pin_peaks() {
  std::lock_guard lock(mu_);
  return peaks_;
}

std::size_t disk_tier::write_back_queued() {
  std::lock_guard lock(mu_);
  return queue_.size() + spills_.size();
}

void disk_tier::pump(asio::any_io_executor ex) {
  std::vector<pending_spill> spills;
  std::vector<cache::chunk_id> start;
  {
    std::lock_guard lock(mu_);
    auto take_turn = [this](std::uint64_t len) {
      if (in_flight_bytes_ > 0 && in_flight_bytes_ + len > limit_)
        return false;  // (one may always run)
      in_flight_bytes_ += len;
      in_flight_ += len;
      return true;
    };
    // Spills first: they hold memory until written.
    while (!spills_.empty() && take_turn(spills_.front().id.length())) {
      spills.push_back(std::move(spills_.front()));
      spills_.pop_front();
    }
    while (spills_.empty() && !queue_.empty() && take_turn(queue_.front().length())) {
      queued_bytes_ -= queue_.front().length();
      start.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  for (auto& p : spills) asio::co_spawn(spill_ex_, spill(std::move(p)), asio::detached);
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
  done_writing(len, nullptr);
  pump(co_await asio::this_coro::executor);
}

}  // namespace valkyrie::tier

namespace valkyrie::tier {

cache::chunk_cache::spill_answer disk_tier::spill_wanted(const cache::chunk_id& id,
                                                         std::uint64_t rank, bool ahead) {
  using answer = cache::chunk_cache::spill_answer;
  // (outside the order: never needed again as far as anyone knows)
  if (rank == cache::chunk_cache::not_in_order || !store_->ranked() || !store_->admits(id))
    return answer::no;
  if (store_->contains(id)) return answer::on_disk;
  // Ahead of eviction only into free room: displacing the disk's farthest chunk for one that
  // memory may yet keep until its use would lose it for nothing (the eviction decides that).
  if (ahead && !store_->has_room_for(id, cache_->capacity())) return answer::no;
  const std::uint64_t len = id.length();
  {
    std::lock_guard lock(mu_);
    // (ahead: up to the hold; evicting: as many as are written at once, the rest dropped now.
    // Pinned chunks cannot be evicted, so each one pinned at eviction makes memory drop a chunk
    // needed sooner in its place: more of them cost more than the disk saves.)
    auto& held = ahead ? held_ahead_bytes_ : held_evicted_bytes_;
    // When the disk holds the whole order, every chunk dropped here is fetched again next
    // epoch and nothing written displaces anything: evictions may pin up to pin_limit_ and,
    // with spills ahead, three quarters of the cache (bench-disk part a, 2026-12-05: 4-12
    // chunks dropped in epoch 1 and 0.977-0.992 of epoch 2 without S3 in 7 runs; an eighth at
    // eviction, half in all: 10-108 and 0.79-0.98 in 8 runs; half at eviction, half in all:
    // 26-33 and 0.936-0.949 in 3. Epoch 1 about 8% slower on 2 cores: docs/benchmarks.md.)
    const bool fits = !ahead && order_fits_;
    const std::uint64_t limit = ahead ? hold_limit_ : fits ? pin_limit_ : evict_hold_;
    const std::uint64_t joint = fits ? pin_limit_ + hold_limit_ : pin_limit_;
    const std::uint64_t pinned = held_ahead_bytes_ + held_evicted_bytes_;
    if (held == 0 || (held + len <= limit && pinned + len <= joint)) {
      held += len;
      peaks_.ahead = std::max(peaks_.ahead, held_ahead_bytes_);
      peaks_.evicted = std::max(peaks_.evicted, held_evicted_bytes_);
      peaks_.total = std::max(peaks_.total, pinned + len);
      return answer::write;
    }
  }
  if (!ahead) store_->count_dropped();  // (evicting: memory needs the room now, unwritten)
  return answer::busy;
}

void disk_tier::spill_taken(pending_spill p) {
  {
    std::lock_guard lock(mu_);
    spills_.push_back(std::move(p));
  }
  pump(spill_ex_);
}

awaitable<void> disk_tier::spill(pending_spill p) {
  auto self = shared_from_this();
  const std::uint64_t len = p.id.length();
  {
    std::vector<std::span<const char>> pieces = p.ref->pieces();
    if (co_await store_->write(p.id, std::move(pieces)))
      cache_->mark_stored(std::move(*p.ref), !p.ahead);
  }
  p.ref.reset();  // (the cache may drop it now)
  done_writing(len, p.ahead ? &held_ahead_bytes_ : &held_evicted_bytes_);
  pump(co_await asio::this_coro::executor);
}

void disk_tier::done_writing(std::uint64_t len, std::uint64_t* held) {
  {
    std::lock_guard lock(mu_);
    in_flight_bytes_ -= len;
    if (held) *held -= len;
  }
  in_flight_ -= len;
}

}  // namespace valkyrie::tier
