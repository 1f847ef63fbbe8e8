#include "fs/filesystem.hpp"

#include <algorithm>
#include <optional>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/reactor_pool.hpp"
#include "core/trace.hpp"
#include "fs/fs_metrics.hpp"
#include "s3/parallel_get.hpp"

namespace valkyrie::fs {

namespace {
// The GETs that fill one chunk: one per piece of its memory (usually one), each cut into
// `part`-sized ranges when a reader waits (its first bytes then arrive after one part's
// transfer, not the whole chunk's); all in flight at once on the calling reactor. Every GET's
// size and duration feed the link estimator.
awaitable<result<std::size_t>> get_pieces(s3::object_client* client, cache::version_ref object,
                                          std::uint64_t offset, cache::chunk_buffers dest, std::size_t part,
                                          prefetch::link_estimator* link) {
  s3::part_list gets;
  for (auto& piece : dest) {
    for (std::size_t at = 0; at < piece.size(); at += part)
      gets.emplace_back(offset + at, piece.subspan(at, std::min(part, piece.size() - at)));
    offset += piece.size();
  }
  auto started = std::chrono::steady_clock::now();
  if (gets.size() == 1) {
    auto r = co_await client->get(object->key, gets[0].first, gets[0].second, object->etag);
    if (r && link) link->observe(*r, std::chrono::steady_clock::now() - started);
    co_return r;
  }
  auto r = co_await s3::get_parts(client, object->key, object->etag, std::move(gets),
                                  [link](std::size_t bytes, std::chrono::steady_clock::duration took) {
                                    if (link) link->observe(bytes, took);
                                  });
  if (r.first_failure) co_return r.first_failure;
  co_return r.bytes;
}
}  // namespace

cache::chunk_cache::fetch_fn filesystem::s3_fetcher(cache::chunk_id chunk, bool reader_waiting) {
  // Runs on the reactor that starts the fetch, with that reactor's client.
  return [this, chunk, reader_waiting](cache::chunk_buffers dest) -> awaitable<result<std::size_t>> {
    return get_pieces(&client(), chunk.object, chunk.offset(), std::move(dest),
                      reader_waiting ? demand_part_size : std::size_t{1} << 40, link_.get());
  };
}

bool filesystem::on_disk(const cache::chunk_id& chunk) const {
  return opts_.disk && opts_.disk->store().contains(chunk);
}

cache::chunk_cache::fetch_fn filesystem::fetcher(cache::chunk_id chunk, bool reader_waiting) {
  auto s3 = s3_fetcher(chunk, reader_waiting);
  // With a shared tier: the shared bucket before S3 (S3's chunks stored there after).
  if (opts_.shared) s3 = opts_.shared->wrap(chunk, std::move(s3), reader_waiting ? demand_part_size : std::size_t{1} << 40);
  // With a disk tier: the disk first, then the shared tier or S3 (then written back to the disk).
  return opts_.disk ? opts_.disk->wrap(std::move(chunk), std::move(s3)) : s3;
}

asio::any_io_executor filesystem::executor_for(std::uint64_t chunk, asio::any_io_executor here) const {
  return executors_.empty() ? here : executors_[chunk % executors_.size()];
}

filesystem::prefetch_outcome filesystem::fetch_whole(const cache::version_ref& object, asio::any_io_executor here,
                                                     std::shared_ptr<const order_state> basis) {
  const std::uint64_t cs = cache_->chunk_size();
  // A file larger than the link's bandwidth-delay product: its start covers the switch to it,
  // and its own read-ahead takes over once it is read (a 4 GiB next file is not fetched whole).
  const std::uint64_t head = std::max<std::uint64_t>(cs, link_->bandwidth_delay(cs));
  std::uint64_t chunks = (std::min(object->size, head) + cs - 1) / cs, started = 0;
  prefetch_outcome out = prefetch_outcome::present;
  for (std::uint64_t c = 0; c < chunks; ++c) {
    auto key = cache_->chunk(object, c);
    if (cache_->present(key)) continue;
    cache::chunk_cache::wanted_fn wanted;
    if (basis) wanted = [this, basis] { return order_.load() == basis; };
    if (!cache_->prefetch(key, fetcher(key, false), executor_for(key, here), std::move(wanted), next_files_source,
                          on_disk(key))) {
      out = prefetch_outcome::refused;  // no room: the rest of the file (and what follows) waits
      break;
    }
    out = prefetch_outcome::started;
    ++started;
  }
  if (started > 0) fs_metrics::get().files_prefetched.add();
  if (out != prefetch_outcome::refused && chunks * cs >= object->size && on_whole_prefetch_)
    on_whole_prefetch_(object, here);
  if (trace::enabled() && started > 0)  // (the arguments are built only when someone traces)
    trace::instant("prefetch.file", "prefetch", {{"key", object->key}, {"chunks", chunks}, {"started", started}});
  return out;
}

awaitable<void> filesystem::fetch_next_files(std::shared_ptr<open_file> file) {
  const std::string relative = file->key.substr(opts_.prefix.size());
  auto order = order_.load();
  auto here = co_await asio::this_coro::executor;
  // A file of the order is followed by what the order says (nothing after its last key); only
  // files outside it fall back to the directory rules.
  if (order && order->predictor->contains(relative)) {
    std::size_t at = order->predictor->advance_to(relative);
    if (at != prefetch::predictor::npos) co_await prefetch_order(order, at + 1, here);
    co_return;
  }
  ino_t parent = 0;
  {
    std::lock_guard lock(mu_);
    const node* n = inodes_.find(file->ino);
    if (!n) co_return;
    parent = inodes_.parent_of(*n);
  }
  // The directory's shared listing snapshot (cached for --metadata-ttl; no copy).
  auto snapshot = co_await listing(parent);
  if (!snapshot) co_return;
  const dir_listing& entries = **snapshot;
  const std::string dir_key = file->key.substr(0, file->key.rfind('/') + 1);
  const std::string name = file->key.substr(dir_key.size());
  const std::size_t self = entries.find(name);
  if (self == dir_listing::npos) co_return;
  // Numbered names first (shard_9 -> shard_10, which the listing sorts elsewhere), else listing
  // order, walked in the shared listing itself.
  struct listing_view {
    const dir_listing& l;
    std::size_t size() const { return l.size(); }
    std::string_view name(std::size_t i) const { return l.name(i); }
    bool is_file(std::size_t i) const { return !l.at(i).directory; }
    std::size_t find(std::string_view n) const { return l.find(n); }
  };
  const listing_view view{entries};
  auto seq = directory_sequence(parent);
  // Held across the decision and the fetches it starts: readers of one directory on several
  // reactors would otherwise walk and count the same files twice. (Nothing below waits.)
  std::lock_guard lock(seq->mu);
  // How far ahead: doubles while the readers keep opening the files started for them (they
  // follow the listing), back to the first depth when they do not. One reader opens the file
  // predicted; several (DataLoader workers taking the next names in turn) open the files
  // started ahead slightly out of order, so a file among them, or just behind them, follows
  // too (measured with 8 such readers: the depth kept falling back to 2).
  const std::size_t frontier_at =
      seq->frontier.empty() ? dir_listing::npos : entries.find(seq->frontier);
  const bool among_started = frontier_at != dir_listing::npos && self <= frontier_at &&
                             frontier_at - self <= std::size_t{seq->ahead} + max_readers_behind;
  const bool follows = among_started || (!seq->predicted.empty() && seq->predicted == name);
  seq->streak = follows ? std::min(seq->streak + 1, 16u) : 0;
  unsigned depth =
      std::min<unsigned>(opts_.lookahead_files, std::max(1u, opts_.first_lookahead_files)
                                                    << std::min(seq->streak, 10u));
  depth = std::min(depth, max_directory_lookahead);
  // Files of a chunk or more: the first files ahead cover the switch (see prefetch_order).
  if (entries.at(self).size >= cache_->chunk_size())
    depth = std::min(depth, std::max(1u, opts_.first_lookahead_files));
  // The files started before lie up to the frontier: each open that follows takes one of them,
  // and only what is missing up to `depth` is walked, from the frontier on (measured: walking
  // and checking up to 256 names again at every open took about a third of the daemon's CPU
  // for one reader of 110 KiB files in listing order).
  std::size_t from = self;
  unsigned ahead = 0;
  if (follows && seq->ahead > 0 && frontier_at != dir_listing::npos) {
    from = frontier_at;
    ahead = seq->ahead - 1;
  }
  const auto successor = prefetch::next_in_listing(view, self, 1);
  seq->predicted = successor.empty() ? std::string() : std::string(entries.name(successor.front()));
  const std::vector<std::size_t> next = depth > ahead
                                            ? prefetch::next_in_listing(view, from, depth - ahead)
                                            : std::vector<std::size_t>{};
  if (trace::enabled()) {
    std::string names;
    for (auto i : next) names += (names.empty() ? "" : " ") + std::string(entries.name(i));
    trace::instant("prefetch.next_files", "prefetch", {{"after", file->key}, {"source", "directory"}, {"next", names}});
  }
  // Nearest first, and never more than the prefetch zone holds, so that they are still there
  // when read. The frontier moves to the last file started (or found cached) without a gap.
  if (from == self) seq->frontier = name;
  for (auto i : next) {
    const auto& e = entries.at(i);
    if (!room_ahead(e.size)) break;
    auto object = cache::make_version(opts_.bucket, dir_key + std::string(entries.name(i)), e.etag.str(), e.size);
    if (fetch_whole(object, here, nullptr) == prefetch_outcome::refused) break;
    seq->frontier = entries.name(i);
    ++ahead;
  }
  seq->ahead = ahead;
}

bool filesystem::room_ahead(std::uint64_t object_size) const {
  const std::uint64_t ahead = cache_->prefetch_zone_bytes();
  if (ahead == 0) return true;  // (one file, however big, may always go)
  // A file of a chunk or more: its chunks keep the link busy by themselves (the caller bounds
  // how many files), the zone bounds the bytes.
  if (object_size >= cache_->chunk_size()) return ahead + object_size <= cache_->prefetch_zone_bound();
  // The link's bandwidth-delay product for requests of this file's size (without the budget's
  // margin for jitter): enough to keep the link busy, and deeper only takes cache room from
  // data that will be read again (a training order's next epoch).
  const std::uint64_t request = std::min<std::uint64_t>(std::max<std::uint64_t>(object_size, 1), cache_->chunk_size());
  const std::uint64_t depth = std::min(cache_->prefetch_zone_bound(), link_->bandwidth_delay(request));
  return ahead + object_size <= depth;
}

std::shared_ptr<filesystem::dir_sequence> filesystem::directory_sequence(ino_t dir) {
  auto current = last_dir_.load();
  if (current && current->dir == dir) return current;
  auto fresh = std::make_shared<dir_sequence>();
  fresh->dir = dir;
  last_dir_.store(fresh);  // (a race with another directory's reader: one of them starts over)
  return fresh;
}

awaitable<void> filesystem::prefetch_order(std::shared_ptr<const order_state> order, std::size_t from,
                                           asio::any_io_executor here) {
  // One pass at a time per order: readers open files far more often than a pass takes, so a
  // trigger that finds a pass running has nothing to add.
  if (order->pumping.exchange(true)) co_return;
  const auto& keys = order->predictor->keys();
  const std::size_t limit = std::min(keys.size(), from + std::min<std::size_t>(opts_.lookahead_files, max_order_lookahead));
  std::size_t i = std::max(from, order->scheduled_to.load());
  // Readers a few files behind the others find it all scheduled (i > limit: nothing to do); a
  // cursor far behind what was scheduled is a new pass over the order (the next epoch).
  if (i > from + 2 * max_order_lookahead) i = from;
  for (; i < limit; ++i) {
    auto info = co_await describe(keys[i]);
    if (!info) continue;
    // Files as big as a chunk or more fill the link with their own chunks: the first files
    // ahead cover the switch from one to the next, within the prefetch zone, and more only
    // take cache room from data read again later (measured: a 512 MiB cache over 1 GiB of
    // 64 MiB files keeps 0.50 of epoch 2 with 2 files ahead, 0.44 with 3). Small files: as
    // many as the link's bandwidth-delay product holds.
    const std::uint64_t files_ahead =
        info->size >= cache_->chunk_size()
            ? opts_.first_lookahead_files
            : std::max<std::uint64_t>(opts_.first_lookahead_files,
                                      link_->bandwidth_delay(cache_->chunk_size()) / std::max<std::uint64_t>(info->size, 1));
    if (i - from >= files_ahead || !room_ahead(info->size)) break;
    auto object = cache::make_version(opts_.bucket, opts_.prefix + keys[i], info->etag, info->size);
    if (fetch_whole(object, here, order) == prefetch_outcome::refused) break;
  }
  order->scheduled_to.store(i);
  order->pumping.store(false);
}

awaitable<result<s3::object_info>> filesystem::describe(std::string relative_key) {
  if (auto known = known_.load()) {
    auto it = known->find(relative_key);
    if (it != known->end()) co_return it->second;
  }
  co_return co_await client().head(opts_.prefix + relative_key);
}

awaitable<void> filesystem::warm_up_order() {
  auto order = order_.load();
  if (!order || opts_.lookahead_files == 0) co_return;
  auto here = co_await asio::this_coro::executor;
  co_await prefetch_order(order, 0, here);
}

awaitable<void> filesystem::warm_up(std::vector<std::string> relative_keys) {
  auto basis = order_.load();  // the order these keys come from (if any)
  auto here = co_await asio::this_coro::executor;
  for (auto& k : relative_keys) {
    auto info = co_await describe(k);
    if (!info) continue;
    if (!room_ahead(info->size)) break;
    auto object = cache::make_version(opts_.bucket, opts_.prefix + k, info->etag, info->size);
    if (fetch_whole(object, here, basis) == prefetch_outcome::refused) break;
  }
}

awaitable<std::optional<cache::chunk_ref>> filesystem::chunk_when_ready(cache::version_ref object,
                                                                        std::uint64_t index) {
  co_return co_await cache_->pin_when_ready(cache_->chunk(std::move(object), index), true);
}

std::uint32_t filesystem::chunk_size() const {
  return cache_->chunk_size();
}

awaitable<std::optional<std::vector<cache::chunk_ref>>> filesystem::take_whole(
    std::shared_ptr<open_file> file) {
  if (opts_.lookahead_files > 0 && file->stream->claim_next_files(0)) {
    auto ex = co_await asio::this_coro::executor;  // (named: see fetch_next_files)
    asio::co_spawn(ex, fetch_next_files(file), asio::detached);
  }
  const std::uint64_t cs = cache_->chunk_size();
  const std::uint64_t chunks = (file->size + cs - 1) / cs;
  for (std::uint64_t c = 0; c < chunks; ++c)
    if (!cache_->present(cache_->chunk(file->object, c))) co_return std::nullopt;
  std::vector<cache::chunk_ref> refs;
  refs.reserve(chunks);
  for (std::uint64_t c = 0; c < chunks; ++c) {
    auto key = cache_->chunk(file->object, c);
    auto ref = co_await cache_->get(key, fetcher(key, true));
    if (!ref || ref->size() != key.length()) co_return std::nullopt;
    refs.push_back(std::move(*ref));
  }
  co_return refs;
}

awaitable<result<read_result>> filesystem::read(std::shared_ptr<open_file> file, std::uint64_t offset,
                                                std::size_t size) {
  read_result out;
  if (offset >= file->size || size == 0) co_return out;
  std::uint64_t end = std::min<std::uint64_t>(file->size, offset + size);
  const std::uint64_t cs = cache_->chunk_size();
  std::uint64_t first = offset / cs, last = (end - 1) / cs;

  const prefetch::readahead ahead = file->stream->on_read(offset, size);
  const bool sequential = ahead.sequential;
  if (ahead.from < ahead.to) {
    auto here = co_await asio::this_coro::executor;
    // Spread read-ahead over every reactor's connection pool, not just this one's.
    for (std::uint64_t c = ahead.from; c < ahead.to; ++c) {
      auto key = cache_->chunk(file->object, c);
      if (cache_->present(key)) continue;
      if (!cache_->prefetch(key, fetcher(key, false), executor_for(key, here),
                            [stream = file->stream, c] { return stream->wants(c); },
                            reinterpret_cast<std::uintptr_t>(file.get()), on_disk(key))) {
        file->stream->refused(c);  // no room now: the next read asks again
        break;
      }
    }
    if (trace::enabled())
      trace::instant("prefetch.readahead", "prefetch",
                     {{"key", file->key}, {"window", ahead.window}, {"from_chunk", ahead.from}, {"to_chunk", ahead.to}});
  }
  if (ahead.window > 0 && opts_.lookahead_files > 0 && file->stream->claim_next_files(offset)) {
    auto ex = co_await asio::this_coro::executor;  // (named: see fetch_next_files)
    asio::co_spawn(ex, fetch_next_files(file), asio::detached);
  }

  auto& m = fs_metrics::get();
  m.reads.add();
  std::chrono::steady_clock::duration stalled{};
  bool served = false;  // by a cold small read's own GET
  // A cold small read at the start of a stream, in a large chunk, gets its own GET of just its
  // bytes, the chunk filled beside it (the reader is likely to go on); a small object (its
  // whole chunk about as quick to fetch) is one GET of it all, and a random reader fetches
  // blocks (below), never whole chunks it did not ask for.
  if (sequential && first == last && end - offset <= opts_.cold_read_direct_max) {
    auto key = cache_->chunk(file->object, first);
    // (a chunk on the disk tier comes from there sooner than a GET would; with a shared tier the
    // chunk is likely there, and a GET of the origin is what that tier saves)
    if (key.length() > opts_.cold_read_direct_min_chunk && !cache_->present(key) && !opts_.shared &&
        !(opts_.disk && opts_.disk->store().contains(key))) {
      auto asked = std::chrono::steady_clock::now();
      auto ec = co_await read_cold_direct(file, offset, end, &out);
      stalled += std::chrono::steady_clock::now() - asked;
      if (ec) co_return ec;
      served = !out.slices.empty();
    }
  }
  for (std::uint64_t c = first; !served && c <= last; ++c) {
    std::uint64_t chunk_start = c * cs;
    std::uint64_t from = std::max(offset, chunk_start), to = std::min(end, chunk_start + cs);
    // Named, not temporaries: GCC 12 destroys temporaries of a co_await expression twice.
    cache::chunk_id key = cache_->chunk(file->object, c);
    // A random reader's miss fetches the blocks it touches, not the whole chunk.
    const bool blocks = !sequential && opts_.random_block_size < cs && key.length() > opts_.random_block_size &&
                        !cache_->present(key);
    const std::uint64_t unit = blocks ? opts_.random_block_size : cs;
    for (std::uint64_t b = from / unit; b * unit < to; ++b) {
      if (blocks) key = cache::chunk_id{file->object, static_cast<std::uint32_t>(unit), b};
      auto fetch = fetcher(key, true);
      auto asked = std::chrono::steady_clock::now();
      auto ref = co_await cache_->get(key, std::move(fetch));
      if (!ref || !ref->hit()) stalled += std::chrono::steady_clock::now() - asked;
      if (!ref) {
        if (ref.error() == errc::precondition_failed) {
          mark_stale(file->ino);
          m.stale_objects.add();
          log::limited("fs", spdlog::level::warn, "stale", "object changed while open; read fails with ESTALE",
                       {{"key", file->key}, {"etag_at_open", file->etag}});
        }
        co_return ref.error();
      }
      std::uint64_t lo = std::max(from, key.offset()) - key.offset();
      std::uint64_t hi = std::min<std::uint64_t>(to - key.offset(), ref->size());
      if (hi <= lo) co_return make_error_code(errc::truncated_body);  // object shorter than listed
      ref->slice(lo, hi, out.slices);
      out.bytes += hi - lo;
      out.chunks.push_back(std::move(*ref));
    }
  }
  // The training order learns how far its current file has been read (for eviction).
  std::shared_ptr<const order_state> reading_order = order_.load();
  if (reading_order && file->key.size() > opts_.prefix.size())
    reading_order->predictor->reading(std::string_view(file->key).substr(opts_.prefix.size()), first);
  if (stalled.count() > 0) {
    auto ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(stalled).count());
    m.stalled_reads.add();
    m.stall_ns.add(ns);
    m.stall.observe(ns);
  }
  m.read_bytes.add(out.bytes);
  co_return out;
}

awaitable<void> filesystem::fill_chunk(std::shared_ptr<open_file> file, std::uint64_t chunk) {
  cache::chunk_id key = cache_->chunk(file->object, chunk);  // (named: GCC 12 and co_await temporaries)
  auto fetch = fetcher(key, true);
  auto ref = co_await cache_->get(std::move(key), std::move(fetch));
  (void)ref;  // cached for the reads that follow; released at once
}

awaitable<std::error_code> filesystem::read_cold_direct(std::shared_ptr<open_file> file,
                                                        std::uint64_t offset, std::uint64_t end,
                                                        read_result* out) {
  const std::uint64_t chunk = offset / cache_->chunk_size();
  auto here = co_await asio::this_coro::executor;
  asio::co_spawn(here, fill_chunk(file, chunk), asio::detached);
  out->direct.resize(static_cast<std::size_t>(end - offset));
  std::span<char> dest(out->direct);
  auto asked = std::chrono::steady_clock::now();
  auto got = co_await client().get(file->key, offset, dest, file->etag);
  if (got && link_) link_->observe(*got, std::chrono::steady_clock::now() - asked);
  if (!got || *got != dest.size()) {
    out->direct.clear();
    if (!got && got.error() == errc::retries_exhausted) co_return got.error();
    co_return std::error_code{};
  }
  out->slices.push_back(std::span<const char>(out->direct));
  out->bytes = out->direct.size();
  co_return std::error_code{};
}

}  // namespace valkyrie::fs
