#include "cache/chunk_cache.hpp"

#include <stdexcept>

#include <boost/asio/post.hpp>

#include "cache/cache_metrics.hpp"
#include "core/errors.hpp"
#include "core/metrics.hpp"
#include "core/trace.hpp"

namespace valkyrie::cache {
namespace {
using detail::cache_metrics;

// At most this many pieces per chunk: beyond, more is evicted rather than scatter a chunk further.
constexpr unsigned max_extents = 16;
// Entries of each zone list a ranked eviction looks at (see evict_one).
constexpr std::size_t belady_scan = 128;

// Calls f(list, it) for the chunks a ranked eviction looks at: where the farthest is likely (the
// least recently read, the unread prefetches queued last), at most belady_scan of each.
template <class F>
void for_each_candidate(std::list<cache_node*>& lru, std::list<cache_node*>& prefetched, F&& f) {
  std::size_t n = 0;
  for (auto it = lru.begin(); it != lru.end() && n < belady_scan; ++it, ++n) f(lru, it);
  n = 0;
  for (auto it = prefetched.end(); it != prefetched.begin() && n < belady_scan; ++n)
    f(prefetched, --it);
}
}  // namespace

chunk_ref& chunk_ref::operator=(chunk_ref&& o) noexcept {
  if (this != &o) {
    release();
    cache_ = o.cache_;
    shard_ = o.shard_;
    entry_ = o.entry_;
    pieces_ = std::move(o.pieces_);
    size_ = o.size_;
    hit_ = o.hit_;
    o.cache_ = nullptr;
  }
  return *this;
}

void chunk_ref::slice(std::size_t from, std::size_t to,
                      std::vector<std::span<const char>>& out) const {
  std::size_t at = 0;  // chunk offset of the current piece
  for (auto& p : pieces_) {
    std::size_t end = at + p.size();
    if (end > from && at < to) {
      std::size_t lo = std::max(from, at) - at, hi = std::min(to, end) - at;
      out.push_back(p.subspan(lo, hi - lo));
    }
    if (end >= to) break;
    at = end;
  }
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
  if (capacity / page_allocator::page_size > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument("the cache is larger than 16 TiB");
  const auto pages = static_cast<std::uint32_t>(capacity / page_allocator::page_size);
  arena_bytes_ = std::uint64_t{pages} * page_allocator::page_size;
  set_prefetch_share(0.5);
  // Reserved, not committed: pages are backed only when a chunk is first written.
  auto region = huge_region::reserve(arena_bytes_);
  if (!region)
    throw std::runtime_error("cannot reserve the cache arena: " + region.error().message());
  arena_memory_ = std::move(*region);
  arena_ = arena_memory_.data();
  // Each shard owns an equal run of pages, so a shard the hash gives more than its share evicts
  // early while others have room: shards are large (512 MiB, at most 16) to keep that skew
  // small (a 2 GiB cache of 110 KiB objects: 4 shards of ~4,700, each expecting 4,500 +- 67),
  // and still several, so the reactors rarely meet on a lock.
  if (shards == 0) shards = static_cast<unsigned>(std::clamp<std::uint64_t>(capacity >> 29, 1, 16));
  shards = std::min(shards, slots());
  const std::uint32_t per_shard = pages / shards;
  for (unsigned i = 0; i < shards; ++i)
    shards_.push_back(std::make_unique<shard>(i * per_shard,
                                              i + 1 == shards ? pages - i * per_shard : per_shard));
  cache_metrics::get().capacity.add(static_cast<std::int64_t>(arena_bytes_));
}

chunk_cache::~chunk_cache() {
  auto& m = cache_metrics::get();
  m.capacity.sub(static_cast<std::int64_t>(arena_bytes_));
  m.prefetch_limit_bytes.sub(static_cast<std::int64_t>(bytes_limit_published_));
  for (auto& s : shards_)
    for (auto& [_, e] : s->entries) {
      if (e.st != entry::state::ready)
        m.filling.sub(static_cast<std::int64_t>(e.reserved));
      else
        m.zone(e).sub(static_cast<std::int64_t>(e.size));
    }
}

chunk_buffers chunk_cache::buffers_of(const chunk_entry& e) const {
  chunk_buffers out;
  std::uint64_t left = e.reserved;
  for (auto& x : e.extents) {
    std::uint64_t n =
        std::min<std::uint64_t>(left, std::uint64_t{x.count} * page_allocator::page_size);
    out.emplace_back(arena_ + std::uint64_t{x.first} * page_allocator::page_size, n);
    left -= n;
  }
  return out;
}

bool chunk_cache::take_memory(shard& s, std::uint64_t bytes, std::vector<extent>& out,
                              const rank_fn* ranker, bool for_prefetch,
                              std::optional<std::uint64_t> incoming, bool local) {
  bytes = std::max<std::uint64_t>(bytes, 1);
  if (ranker && spill_.wants && spill_.ahead_bytes > 0) {
    // (before evicting, which may need the victims it writes; every quarter of the shard's
    // share of ahead_bytes allocated: not a scan per small chunk)
    s.allocated_since_ahead += bytes;
    if (s.allocated_since_ahead >= spill_.ahead_bytes / shards_.size() / 4) {
      s.allocated_since_ahead = 0;
      spill_ahead(s, *ranker);
    }
  }
  for (;;) {
    // The prefetch zone is full: prefetches may only replace unread prefetches nobody wants.
    const bool zone_full =
        !ranker && for_prefetch && prefetch_held_.load() + bytes > prefetch_bound_;
    if (!zone_full && s.memory.allocate(bytes, max_extents, out)) return true;
    if (!evict_one(s, ranker, for_prefetch, zone_full, incoming, local)) return false;
  }
}

void chunk_cache::spill_ahead(shard& s, const rank_fn& ranker) {
  // The candidates evict_one looks at, farthest first.
  std::vector<std::pair<std::uint64_t, cache_node*>> next;
  for_each_candidate(s.lru, s.prefetched,
                     [&](auto&, auto it) { next.emplace_back(ranker((*it)->first), *it); });
  std::sort(next.begin(), next.end(), [](auto& a, auto& b) { return a.first > b.first; });
  const std::uint64_t want = spill_.ahead_bytes / shards_.size();
  std::uint64_t covered = 0;
  for (auto& [rank, node] : next) {
    if (covered >= want || rank == not_in_order) break;  // (outside the order: dropped freely)
    entry& e = node->second;
    if (e.pins > 0) continue;  // (being written, or read: the eviction passes it by for now)
    covered += e.size;
    if (e.spilled) continue;
    const auto answer = spill_.wants(node->first, rank, true);
    if (answer == spill_answer::busy) break;
    // (on_disk does not make it `stored`: a chunk read ahead from the disk is found there, and
    // must not go first before its reader comes)
    e.spilled = answer != spill_answer::no;
    if (answer == spill_answer::write)
      spill_.take(node->first, pin_locked(shard_of(node->first), e), true);
  }
}

bool chunk_cache::evict_one(shard& s, const rank_fn* ranker, bool for_prefetch, bool zone_full,
                            std::optional<std::uint64_t> incoming, bool local) {
  using list = std::list<cache_node*>;
  auto unpinned = [](const cache_node* n) { return n->second.pins == 0; };
  // An unread prefetch a new one may replace: nobody says it is still wanted (read-ahead its
  // reader is about to reach, the next files of the order in force).
  auto replaceable = [](const cache_node* n) {
    return n->second.pins == 0 && !(n->second.wanted && n->second.wanted());
  };
  list* from = nullptr;
  list::iterator victim;
  auto first_of = [&](list& l, auto&& eligible) {
    for (auto it = l.begin(); it != l.end() && !from; ++it)
      if (eligible(*it)) from = &l, victim = it;
  };
  if (ranker) {
    // A known order decides across both zones: the chunk read furthest in the future goes.
    // Where it is likely (the least recently read, the unread prefetches queued last), at most
    // belady_scan of each: exact on small shards, bounded work on shards of many small objects.
    // With a spill, a chunk already on the disk goes first (the farthest of those, mark_stored).
    std::uint64_t furthest = 0, furthest_clean = 0;
    list* clean_from = nullptr;
    list::iterator clean_victim;
    auto consider = [&](list& l, list::iterator it) {
      if (!unpinned(*it)) return;
      std::uint64_t r = (*ranker)((*it)->first);
      if (!from || r > furthest) from = &l, victim = it, furthest = r;
      if ((*it)->second.stored && (!clean_from || r > furthest_clean))
        clean_from = &l, clean_victim = it, furthest_clean = r;
    };
    for_each_candidate(s.lru, s.prefetched, consider);
    if (from && incoming && furthest <= *incoming) return false;  // keep what is needed sooner
    if (clean_from && spill_.wants) {
      from = clean_from;
      victim = clean_victim;
    } else if (from && local && spill_.on_disk && furthest != not_in_order &&
               !spill_.on_disk((*victim)->first)) {
      return false;  // (a disk chunk read early would cost one only memory holds: spill_hook)
    } else if (from && spill_.wants) {
      // Spill: the disk tier may want it first (pinned and handed over; the next turn of
      // take_memory evicts another).
      cache_node* node = *victim;
      entry& e = node->second;
      if (!e.spilled && e.st == entry::state::ready) {
        const auto answer = spill_.wants(node->first, furthest, false);
        if (answer == spill_answer::write) {
          // Its memory comes free when the write is done (mark_stored); the allocation goes on
          // to the next farthest now: a write-back never holds up a reader or its read-ahead.
          e.spilled = true;
          spill_.take(node->first, pin_locked(shard_of(node->first), e), false);
          return true;
        }
        // (busy: the disk is that far behind, and memory needs the room now: dropped, and
        // counted by the spill)
      }
    }
  } else if (zone_full) {
    // Replace the zone's oldest unread chunk that is no longer wanted.
    first_of(s.prefetched, replaceable);
  } else {
    first_of(s.lru, unpinned);
    first_of(s.prefetched, replaceable);
    // A reader's fetch must get memory: read-ahead still wanted goes only when nothing else can.
    if (!for_prefetch) first_of(s.prefetched, unpinned);
  }
  if (!from) return false;
  if (trace::enabled()) {
    const cache_node* node = *victim;
    trace::instant("cache.evict", "cache",
                   {{"key", node->first.object->key},
                    {"chunk", std::uint64_t{node->first.index}},
                    {"read", node->second.read ? 1 : 0},
                    {"rank", ranker ? std::to_string((*ranker)(node->first)) : std::string("lru")},
                    {"for", incoming ? std::to_string(*incoming)
                                     : std::string(for_prefetch ? "prefetch" : "reader")}});
  }
  drop_locked(s, *from, victim);
  return true;
}

void chunk_cache::drop_locked(shard& s, std::list<cache_node*>& from,
                              std::list<cache_node*>::iterator victim) {
  cache_node* node = *victim;
  entry& e = node->second;
  auto& m = cache_metrics::get();
  m.zone(e).sub(static_cast<std::int64_t>(e.size));
  if (e.prefetched && !e.read) {
    m.evicted_unread.add();
    m.prefetch_wasted.add();
  } else {
    m.evicted_lru.add();
  }
  leave_prefetch_zone(e);
  s.memory.release(e.extents);
  from.erase(victim);
  s.entries.erase(node->first);
  ++s.stats.evictions;
}

void chunk_cache::leave_prefetch_zone(chunk_entry& e) {
  if (e.prefetched && !e.read) prefetch_held_.fetch_sub(e.reserved);
}

void chunk_cache::set_prefetch_share(double share) {
  prefetch_bound_ = std::max<std::uint64_t>(
      chunk_size_,
      static_cast<std::uint64_t>(static_cast<double>(arena_bytes_) * std::clamp(share, 0.0, 1.0)));
}

void chunk_cache::mark_stored(chunk_ref ref, bool evict) {
  if (!ref.cache_) return;
  shard& s = *shards_[ref.shard_];
  std::lock_guard lock(s.mu);
  entry& e = *ref.entry_;  // (pinned: still in its shard's map)
  e.stored = true;
  --e.pins;  // (the ref released here, under the lock already held)
  ref.cache_ = nullptr;
  if (evict && e.pins == 0 && e.st == entry::state::ready)
    drop_locked(s, e.in_prefetch_list ? s.prefetched : s.lru, e.lru);
}

void chunk_cache::unpin(unsigned shard_index, chunk_entry* entry) {
  shard& s = *shards_[shard_index];
  std::lock_guard lock(s.mu);
  --entry->pins;  // a pinned entry is never erased, so the pointer is still good
}

void chunk_cache::finish_fetch(const chunk_id& key, unsigned shard_index, result<std::size_t> r) {
  shard& s = *shards_[shard_index];
  std::vector<waiter> waiters;
  {
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(key);
    if (it == s.entries.end()) return;
    entry& e = it->second;
    waiters.swap(e.waiters);
    auto& m = cache_metrics::get();
    m.filling.sub(static_cast<std::int64_t>(e.reserved));
    if (r) {
      e.st = entry::state::ready;
      e.size = *r;
      e.ready_at = std::chrono::steady_clock::now();
      e.in_prefetch_list = e.prefetched && !e.read;
      auto& list = e.in_prefetch_list ? s.prefetched : s.lru;
      e.lru = list.insert(list.end(), &*it);
      m.zone(e).add(static_cast<std::int64_t>(e.size));
    } else {
      ++s.stats.fetch_failures;
      m.fetch_failures.add();
      leave_prefetch_zone(e);
      s.memory.release(e.extents);
      s.entries.erase(it);
    }
  }
  // Each waiter sleeps on a timer of its own reactor: wake it there (the error first, if it is
  // one to share; the post orders the write before the waiter's read).
  const bool share = !r && r.error() == errc::retries_exhausted;
  for (auto& w : waiters) {
    if (share && w.failed) *w.failed = r.error();
    asio::post(w.ex, [t = w.timer] { t->cancel(); });
  }
}

awaitable<void> chunk_cache::run_fetch(chunk_id key, fetch_fn fetch, unsigned shard_index,
                                       chunk_buffers dest, std::shared_ptr<result<std::size_t>> out,
                                       bool prefetched) {
  trace::span span("cache.fill", "cache");
  if (span.active())
    span.add({"key", key.object->key})
        .add({"chunk", std::uint64_t{key.index}})
        .add({"prefetch", prefetched ? 1 : 0});
  metrics::timer fill_time(cache_metrics::get().fill_seconds);
  auto r = co_await fetch(std::move(dest));
  fill_time.stop();
  if (span.active()) span.add({"bytes", std::uint64_t{r ? *r : 0}}).add({"ok", r ? 1 : 0});
  span.end();
  if (out) *out = r;
  finish_fetch(key, shard_index, r);
}

bool chunk_cache::contains(const chunk_id& key) const {
  const shard& s = *shards_[shard_of(key)];
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(key);
  return it != s.entries.end() && it->second.st == entry::state::ready;
}

std::optional<chunk_ref> chunk_cache::pin_ready(const chunk_id& key) {
  const unsigned si = shard_of(key);
  shard& s = *shards_[si];
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(key);
  if (it == s.entries.end() || it->second.st != entry::state::ready) return std::nullopt;
  return pin_locked(si, it->second);
}

awaitable<std::optional<chunk_ref>> chunk_cache::pin_when_ready(chunk_id key, bool wait_queued) {
  const unsigned si = shard_of(key);
  shard& s = *shards_[si];
  auto ex = co_await asio::this_coro::executor;
  std::shared_ptr<asio::steady_timer> timer;
  for (;;) {
    {
      std::lock_guard lock(s.mu);
      auto it = s.entries.find(key);
      if (it == s.entries.end() || (it->second.queued && !wait_queued)) co_return std::nullopt;
      if (it->second.st == entry::state::ready) co_return pin_locked(si, it->second);
      // Filling: woken by finish_fetch (the timer is cancelled), whatever the fetch's outcome.
      if (!timer) timer = std::make_shared<asio::steady_timer>(ex);
      timer->expires_at(asio::steady_timer::time_point::max());
      it->second.waiters.push_back({ex, timer, nullptr});
    }
    co_await timer->async_wait(use_tuple);
  }
}

chunk_ref chunk_cache::pin_locked(unsigned shard_index, chunk_entry& e) {
  ++e.pins;
  chunk_ref ref;
  ref.cache_ = this;
  ref.shard_ = shard_index;
  ref.entry_ = &e;
  ref.size_ = e.size;
  std::size_t left = e.size;
  for (auto& piece : buffers_of(e)) {
    if (left == 0) break;
    ref.pieces_.emplace_back(piece.data(), std::min(piece.size(), left));
    left -= ref.pieces_.back().size();
  }
  return ref;
}

bool chunk_cache::present(const chunk_id& key) const {
  const shard& s = *shards_[shard_of(key)];
  std::lock_guard lock(s.mu);
  return s.entries.count(key) > 0;
}

awaitable<result<chunk_ref>> chunk_cache::get(chunk_id key, fetch_fn fetch) {
  if (key.length() == 0) co_return make_error_code(errc::invalid_range);  // past the object's end
  unsigned si = shard_of(key);
  shard& s = *shards_[si];
  auto ex = co_await asio::this_coro::executor;
  std::shared_ptr<asio::steady_timer> timer;
  std::shared_ptr<std::error_code> failed;  // what a fetch waited for left to share
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto& m = cache_metrics::get();
  m.lookups.add();
  bool first_try = true;  // a lookup is a hit only if the chunk was there on the first try
  for (;;) {
    enum { wait_fetch, fetch_here, wait_slot } next;
    chunk_buffers dest;
    {
      std::lock_guard lock(s.mu);
      auto it = s.entries.find(key);
      if (it != s.entries.end() && it->second.st == entry::state::ready) {
        entry& e = it->second;
        ++e.pins;
        s.lru.splice(s.lru.end(), e.in_prefetch_list ? s.prefetched : s.lru,
                     e.lru);  // (to the hot zone)
        e.in_prefetch_list = false;
        if (first_try) {
          ++s.stats.hits;
          m.hits.add();
        }
        if (!e.read) {
          leave_prefetch_zone(e);
          e.read = true;
          if (e.prefetched) {
            m.prefetch_zone.sub(static_cast<std::int64_t>(e.size));
            m.hot_zone.add(static_cast<std::int64_t>(e.size));
            m.prefetch_used.add();
            if (first_try)
              m.prefetch_lead.observe(static_cast<std::uint64_t>(
                  (std::chrono::steady_clock::now() - e.ready_at).count()));
          }
        }
        chunk_ref ref;
        ref.hit_ = first_try;
        ref.cache_ = this;
        ref.shard_ = si;
        ref.entry_ = &e;
        ref.size_ = e.size;
        std::size_t left = e.size;  // (the fetch may have returned fewer bytes than reserved)
        for (auto& piece : buffers_of(e)) {
          if (left == 0) break;
          ref.pieces_.emplace_back(piece.data(), std::min(piece.size(), left));
          left -= ref.pieces_.back().size();
        }
        co_return ref;
      }
      if (!timer) timer = std::make_shared<asio::steady_timer>(ex);
      if (first_try) m.misses.add();
      if (it != s.entries.end() && it->second.queued) {
        // A prefetch still waiting for its turn: the reader sends it now, ahead of the queue.
        if (first_try) {
          m.reader_waits.add();
          m.prefetch_late.add();
        }
        it->second.queued = false;
        dest = buffers_of(it->second);
        next = fetch_here;
      } else if (it != s.entries.end()) {
        ++s.stats.waits;
        if (first_try) {
          m.reader_waits.add();
          if (it->second.prefetched) m.prefetch_late.add();
        }
        timer->expires_at(asio::steady_timer::time_point::max());
        if (!failed) failed = std::make_shared<std::error_code>();
        it->second.waiters.push_back({ex, timer, failed});
        next = wait_fetch;
      } else if (entry e; key.length() > 0 &&
                          take_memory(s, key.length(), e.extents, ranker_.load().get(), false)) {
        ++s.stats.misses;
        e.reserved = key.length();
        e.read = true;  // a reader's own fetch: hot from the start
        dest = buffers_of(e);
        s.entries.emplace(key, std::move(e));
        m.filling.add(static_cast<std::int64_t>(key.length()));
        next = fetch_here;
      } else {
        next = wait_slot;
      }
      first_try = false;
    }
    if (next == fetch_here) {
      auto r = std::make_shared<result<std::size_t>>(std::size_t{0});
      co_await run_fetch(key, fetch, si, std::move(dest), r, false);
      if (!*r) co_return r->error();
      continue;  // now ready: pin it (or fetch again if it was evicted in between)
    }
    if (next == wait_slot) {
      // The shard's memory is all pinned or being fetched: wait for some to come back.
      if (std::chrono::steady_clock::now() > give_up) co_return make_error_code(errc::cache_full);
      timer->expires_after(std::chrono::milliseconds(1));
    }
    co_await timer->async_wait(use_tuple);
    if (next == wait_fetch && failed && *failed) co_return *failed;
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
    total.prefetch_zone += s->prefetched.size();
    total.hot_zone += s->lru.size();
  }
  return total;
}

std::string chunk_cache::check_invariants() const {
  std::vector<std::uint8_t> held(arena_bytes_ / page_allocator::page_size,
                                 0);  // pages held by entries
  std::uint64_t unread_prefetches = 0, queued = 0;
  for (auto& sp : shards_) {
    std::lock_guard lock(sp->mu);
    const shard& s = *sp;
    if (auto problem = s.memory.check_invariants(); !problem.empty())
      return "page allocator: " + problem;
    std::uint64_t entry_pages = 0;
    std::size_t hot = 0, prefetched = 0;
    for (auto& node : s.entries) {
      const auto& [key, e] = node;
      std::uint64_t pages = 0;
      for (auto& x : e.extents)
        for (std::uint32_t p = x.first; p < x.first + x.count; ++p) {
          if (held[p]++) return "page " + std::to_string(p) + " is held twice";
          ++pages;
        }
      if (pages * page_allocator::page_size < e.reserved)
        return "a chunk has fewer pages than its length";
      entry_pages += pages;
      if (e.prefetched && !e.read) unread_prefetches += e.reserved;
      if (e.queued) ++queued;
      if (e.st != entry::state::ready) continue;
      ++(e.in_prefetch_list ? prefetched : hot);
      if (e.in_prefetch_list != (e.prefetched && !e.read))
        return "a ready chunk is in the wrong zone's list";
      if (*e.lru != &node) return "a ready chunk's list position names another chunk";
    }
    if (hot != s.lru.size() || prefetched != s.prefetched.size())
      return "the zone lists and the ready entries differ";
    if (entry_pages + s.memory.free_pages() != s.memory.page_count())
      return "a shard's pages do not add up: " + std::to_string(entry_pages) + " held + " +
             std::to_string(s.memory.free_pages()) +
             " free != " + std::to_string(s.memory.page_count());
  }
  if (unread_prefetches != prefetch_held_.load())
    return "the prefetch zone counts " + std::to_string(prefetch_held_.load()) +
           " bytes, the entries say " + std::to_string(unread_prefetches);
  return {};
}

}  // namespace valkyrie::cache
