#include "cache/chunk_cache.hpp"

#include <sys/mman.h>

#include <stdexcept>

#include <boost/asio/post.hpp>

#include "core/errors.hpp"

namespace valkyrie::cache {

chunk_ref& chunk_ref::operator=(chunk_ref&& o) noexcept {
  if (this != &o) {
    release();
    cache_ = o.cache_;
    shard_ = o.shard_;
    entry_ = o.entry_;
    data_ = o.data_;
    size_ = o.size_;
    o.cache_ = nullptr;
  }
  return *this;
}

void chunk_ref::release() {
  if (!cache_) return;
  cache_->unpin(shard_, entry_);
  cache_ = nullptr;
}

chunk_cache::chunk_cache(std::uint64_t capacity, std::uint32_t chunk_size, unsigned shards)
    : chunk_size_(chunk_size) {
  if (chunk_size == 0 || capacity / chunk_size < 2)
    throw std::invalid_argument("the cache must hold at least two chunks");
  slots_ = static_cast<std::uint32_t>(capacity / chunk_size);
  arena_bytes_ = std::uint64_t{slots_} * chunk_size_;
  // Reserved, not committed: pages are backed only when a chunk is first written.
  void* p = ::mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("cannot reserve the cache arena");
  arena_ = static_cast<char*>(p);
  if (shards == 0) shards = std::max(1u, std::min(16u, slots_ / 8));
  shards = std::min(shards, slots_);
  for (unsigned i = 0; i < shards; ++i) shards_.push_back(std::make_unique<shard>());
  for (std::uint32_t s = 0; s < slots_; ++s) shards_[s % shards]->free_slots.push_back(s);
}

chunk_cache::~chunk_cache() {
  if (arena_) ::munmap(arena_, arena_bytes_);
}

bool chunk_cache::take_slot(shard& s, std::uint32_t& slot) {
  if (!s.free_slots.empty()) {
    slot = s.free_slots.back();
    s.free_slots.pop_back();
    return true;
  }
  for (auto it = s.lru.begin(); it != s.lru.end(); ++it) {
    auto e = s.entries.find(*it);
    if (e->second.pins > 0) continue;
    slot = e->second.slot;
    s.lru.erase(it);
    s.entries.erase(e);
    ++s.stats.evictions;
    return true;
  }
  return false;
}

void chunk_cache::unpin(unsigned shard_index, chunk_entry* entry) {
  shard& s = *shards_[shard_index];
  std::lock_guard lock(s.mu);
  --entry->pins;  // a pinned entry is never erased, so the pointer is still good
}

void chunk_cache::finish_fetch(const chunk_key& key, unsigned shard_index, result<std::size_t> r) {
  shard& s = *shards_[shard_index];
  std::vector<waiter> waiters;
  {
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(key);
    if (it == s.entries.end()) return;
    entry& e = it->second;
    waiters.swap(e.waiters);
    if (r) {
      e.st = entry::state::ready;
      e.size = *r;
      e.lru = s.lru.insert(s.lru.end(), it->first);
    } else {
      ++s.stats.fetch_failures;
      s.free_slots.push_back(e.slot);
      s.entries.erase(it);
    }
  }
  // Each waiter sleeps on a timer of its own reactor: wake it there.
  for (auto& w : waiters) asio::post(w.ex, [t = w.timer] { t->cancel(); });
}

awaitable<void> chunk_cache::run_fetch(chunk_key key, fetch_fn fetch, unsigned shard_index,
                                       std::uint32_t slot, std::shared_ptr<result<std::size_t>> out) {
  auto r = co_await fetch(std::span<char>(slot_memory(slot), chunk_size_));
  if (out) *out = r;
  finish_fetch(key, shard_index, r);
}

bool chunk_cache::prefetch(chunk_key key, fetch_fn fetch, asio::any_io_executor ex) {
  unsigned si = shard_of(key);
  shard& s = *shards_[si];
  std::uint32_t slot = 0;
  {
    std::lock_guard lock(s.mu);
    if (s.entries.count(key)) return false;
    if (!take_slot(s, slot)) return false;
    entry e;
    e.slot = slot;
    s.entries.emplace(key, std::move(e));
  }
  asio::co_spawn(ex, run_fetch(key, std::move(fetch), si, slot, nullptr), asio::detached);
  return true;
}

bool chunk_cache::contains(const chunk_key& key) const {
  const shard& s = *shards_[shard_of(key)];
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(key);
  return it != s.entries.end() && it->second.st == entry::state::ready;
}

awaitable<result<chunk_ref>> chunk_cache::get(chunk_key key, fetch_fn fetch) {
  unsigned si = shard_of(key);
  shard& s = *shards_[si];
  auto ex = co_await asio::this_coro::executor;
  std::shared_ptr<asio::steady_timer> timer;
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    enum { wait_fetch, fetch_here, wait_slot } next;
    std::uint32_t slot = 0;
    {
      std::lock_guard lock(s.mu);
      auto it = s.entries.find(key);
      if (it != s.entries.end() && it->second.st == entry::state::ready) {
        entry& e = it->second;
        ++e.pins;
        s.lru.splice(s.lru.end(), s.lru, e.lru);
        ++s.stats.hits;
        chunk_ref ref;
        ref.cache_ = this;
        ref.shard_ = si;
        ref.entry_ = &e;
        ref.data_ = slot_memory(e.slot);
        ref.size_ = e.size;
        co_return ref;
      }
      if (!timer) timer = std::make_shared<asio::steady_timer>(ex);
      if (it != s.entries.end()) {
        ++s.stats.waits;
        timer->expires_at(asio::steady_timer::time_point::max());
        it->second.waiters.push_back({ex, timer});
        next = wait_fetch;
      } else if (take_slot(s, slot)) {
        ++s.stats.misses;
        entry e;
        e.slot = slot;
        s.entries.emplace(key, std::move(e));
        next = fetch_here;
      } else {
        next = wait_slot;
      }
    }
    if (next == fetch_here) {
      auto r = std::make_shared<result<std::size_t>>(std::size_t{0});
      co_await run_fetch(key, fetch, si, slot, r);
      if (!*r) co_return r->error();
      continue;  // now ready: pin it (or fetch again if it was evicted in between)
    }
    if (next == wait_slot) {
      // Every slot of this shard is pinned or being fetched: wait for one to come back.
      if (std::chrono::steady_clock::now() > give_up) co_return make_error_code(errc::cache_full);
      timer->expires_after(std::chrono::milliseconds(1));
    }
    co_await timer->async_wait(use_tuple);
  }
}

cache_stats chunk_cache::stats() const {
  cache_stats total;
  for (auto& s : shards_) {
    std::lock_guard lock(s->mu);
    total.hits += s->stats.hits;
    total.misses += s->stats.misses;
    total.waits += s->stats.waits;
    total.evictions += s->stats.evictions;
    total.fetch_failures += s->stats.fetch_failures;
  }
  return total;
}

}  // namespace valkyrie::cache
