#include "fs/filesystem.hpp"

#include <algorithm>
#include <optional>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/reactor_pool.hpp"
#include "core/trace.hpp"
#include "fs/fs_metrics.hpp"

namespace valkyrie::fs {

namespace {
// One ranged GET per part, all in flight at once on the calling reactor; the chunk is complete
// when every part is. Used when a reader is waiting: the first bytes arrive after one part's
// transfer time instead of a whole chunk's.
awaitable<result<std::size_t>> get_in_parts(s3::object_client* client, std::string key, std::string etag,
                                            std::uint64_t offset, std::span<char> dest, std::size_t part) {
  struct state {
    std::size_t remaining = 0, bytes = 0;
    std::error_code error;
    std::shared_ptr<asio::steady_timer> done;
  };
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<state>();
  st->done = std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
  st->remaining = (dest.size() + part - 1) / part;
  for (std::size_t at = 0; at < dest.size(); at += part) {
    auto piece = dest.subspan(at, std::min(part, dest.size() - at));
    asio::co_spawn(ex, client->get(key, offset + at, piece, etag),
                   [st, want = piece.size()](std::exception_ptr e, result<std::size_t> r) {
                     if (e || !r) {
                       if (!st->error) st->error = e ? make_error_code(errc::protocol_error) : r.error();
                     } else if (*r != want) {
                       if (!st->error) st->error = make_error_code(errc::truncated_body);
                     } else {
                       st->bytes += *r;
                     }
                     if (--st->remaining == 0) st->done->cancel();
                   });
  }
  co_await st->done->async_wait(use_tuple);
  if (st->error) co_return st->error;
  co_return st->bytes;
}
}  // namespace

cache::chunk_cache::fetch_fn filesystem::fetcher(std::shared_ptr<open_file> file, std::uint64_t chunk,
                                                 bool reader_waiting) {
  // Runs on the reactor that starts the fetch, with that reactor's client.
  return [this, file, chunk, reader_waiting](std::span<char> dest) -> awaitable<result<std::size_t>> {
    std::uint64_t offset = chunk * cache_->chunk_size();
    std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(dest.size(), file->size - offset));
    if (reader_waiting && len > demand_part_size)
      return get_in_parts(&client(), file->key, file->etag, offset, dest.first(len), demand_part_size);
    return client().get(file->key, offset, dest.first(len), file->etag);
  };
}

asio::any_io_executor filesystem::executor_for(std::uint64_t chunk, asio::any_io_executor here) const {
  return executors_.empty() ? here : executors_[chunk % executors_.size()];
}

cache::chunk_cache::wanted_fn filesystem::readahead_wanted(std::shared_ptr<open_file> file, std::uint64_t chunk,
                                                           std::uint32_t chunk_size) {
  return [file = std::move(file), chunk, chunk_size] {
    return !file->closed.load() && file->window.load() > 0 && file->next_offset.load() / chunk_size <= chunk;
  };
}

std::uint64_t filesystem::fetch_whole(const s3::object_info& object, std::uint64_t budget_chunks,
                                      asio::any_io_executor here, std::shared_ptr<const order_state> basis) {
  auto f = std::make_shared<open_file>();
  f->key = object.key;
  f->etag = object.etag;
  f->size = object.size;
  f->object_id = object.key + '\0' + object.etag;
  const std::uint64_t cs = cache_->chunk_size();
  std::uint64_t chunks = (object.size + cs - 1) / cs, started = 0;
  for (std::uint64_t c = 0; c < chunks && started < budget_chunks; ++c) {
    cache::chunk_key key{f->object_id, c};
    if (cache_->contains(key)) continue;
    cache::chunk_cache::wanted_fn wanted;
    if (basis) wanted = [this, basis] { return order_.load() == basis; };
    if (cache_->prefetch(key, fetcher(f, c, false), executor_for(c, here), std::move(wanted))) ++started;
  }
  fs_metrics::get().files_prefetched.add();
  if (trace::enabled())  // (the arguments are built only when someone traces)
    trace::instant("prefetch.file", "prefetch",
                   {{"key", object.key}, {"chunks", chunks}, {"started", started}, {"budget", budget_chunks}});
  return started;
}

awaitable<void> filesystem::fetch_next_files(std::shared_ptr<open_file> file) {
  std::vector<s3::object_info> next;
  const std::string relative = file->key.substr(opts_.prefix.size());
  auto order = order_.load();
  // A file of the order is followed by what the order says (nothing after its last key); only
  // files outside it fall back to the directory rules.
  const bool in_order = order && order->predictor->contains(relative);
  const char* source = in_order ? order->source.c_str() : "directory";
  if (in_order) {
    auto ordered = order->predictor->next_in_order(relative, opts_.lookahead_files);
    for (auto& k : ordered) {
      auto info = co_await describe(k);
      if (info) next.push_back(*info);
    }
  } else {
    // Not in the training order (or none): the reader's directory, from its cached listing or
    // a fresh one.
    ino_t parent = 0;
    {
      std::lock_guard lock(mu_);
      auto it = nodes_.find(file->ino);
      if (it == nodes_.end()) co_return;
      parent = it->second.parent;
    }
    auto listing = co_await readdir(parent);
    if (!listing) co_return;
    std::vector<std::string> files;
    for (auto& e : *listing)
      if (!e.attr.directory) files.push_back(e.name);
    std::string dir_key = file->key.substr(0, file->key.rfind('/') + 1);
    std::string name = file->key.substr(dir_key.size());
    for (auto& n : prefetch::next_in_directory(files, name, opts_.lookahead_files)) {
      auto e = std::find_if(listing->begin(), listing->end(), [&](auto& d) { return d.name == n; });
      s3::object_info info;
      info.key = dir_key + n;
      info.size = e->attr.size;
      info.etag = e->etag;
      next.push_back(std::move(info));
    }
  }
  if (trace::enabled()) {
    std::string names;
    for (auto& n : next) names += (names.empty() ? "" : " ") + n.key;
    trace::instant("prefetch.next_files", "prefetch",
                   {{"after", file->key}, {"source", source},
                    {"next", names}});
  }
  // Nearest first, and never more than the prefetch zone holds, so that they are still there
  // when read.
  // Named, not temporaries: GCC 12 destroys temporaries of a co_await expression twice.
  std::uint64_t budget = cache_->prefetch_zone_bound();
  auto here = co_await asio::this_coro::executor;
  std::shared_ptr<const order_state> basis = in_order ? order : nullptr;
  for (auto& info : next) {
    if (budget == 0) break;
    budget -= std::min(budget, fetch_whole(info, budget, here, basis));
  }
}

awaitable<result<s3::object_info>> filesystem::describe(std::string relative_key) {
  if (auto known = known_.load()) {
    auto it = known->find(relative_key);
    if (it != known->end()) co_return it->second;
  }
  co_return co_await client().head(opts_.prefix + relative_key);
}

awaitable<void> filesystem::warm_up(std::vector<std::string> relative_keys) {
  auto basis = order_.load();  // the order these keys come from (if any)
  std::uint64_t budget = cache_->prefetch_zone_bound();
  auto here = co_await asio::this_coro::executor;
  for (auto& k : relative_keys) {
    auto info = co_await describe(k);
    if (!info || budget == 0) continue;
    budget -= std::min(budget, fetch_whole(*info, budget, here, basis));
  }
}

awaitable<result<read_result>> filesystem::read(std::shared_ptr<open_file> file, std::uint64_t offset,
                                                std::size_t size) {
  read_result out;
  if (offset >= file->size || size == 0) co_return out;
  std::uint64_t end = std::min<std::uint64_t>(file->size, offset + size);
  const std::uint64_t cs = cache_->chunk_size();
  std::uint64_t first = offset / cs, last = (end - 1) / cs;
  std::uint64_t total_chunks = (file->size + cs - 1) / cs;

  // Sequential (near where the reader has got to) grows the window; anything else collapses it
  // to nothing, so random readers fetch only what they touch. "Near" is a chunk either way: the
  // kernel sends several reads of one stream at once and two reactors answer them, so a read
  // may arrive just behind one that was sent after it. Taken as random, such a read would
  // collapse the window, and read-ahead queued meanwhile would be cancelled as unwanted.
  std::uint64_t expected = file->next_offset.load();
  bool sequential = offset <= expected + cs && offset + cs >= expected;
  unsigned window = file->window.load();
  // A read from the start of a file is most likely the start of a whole-file read, unless it is
  // a small peek (a header, a magic number): then one chunk ahead, and the window grows if the
  // reader goes on.
  const unsigned first_window = offset != 0 ? 2u : size >= small_first_read ? 4u : 1u;
  window = sequential ? std::min(opts_.max_readahead_chunks, std::max(first_window, window * 2)) : 0;
  file->window.store(window);
  if (sequential) {  // (a late read of the stream does not move it back)
    while (end > expected && !file->next_offset.compare_exchange_weak(expected, end)) {
    }
  } else {
    file->next_offset.store(end);
  }
  if (window > 0) {
    auto here = co_await asio::this_coro::executor;
    std::uint64_t ahead_end = std::min<std::uint64_t>(total_chunks, last + 1 + window);
    std::uint64_t from = std::max<std::uint64_t>(last + 1, file->prefetched_to.load());
    // Spread read-ahead over every reactor's connection pool, not just this one's.
    for (std::uint64_t c = from; c < ahead_end; ++c)
      cache_->prefetch({file->object_id, c}, fetcher(file, c, false), executor_for(c, here),
                       readahead_wanted(file, c, static_cast<std::uint32_t>(cs)));
    if (from < ahead_end && trace::enabled())
      trace::instant("prefetch.readahead", "prefetch",
                     {{"key", file->key}, {"window", window}, {"from_chunk", from}, {"to_chunk", ahead_end}});
    std::uint64_t prev = file->prefetched_to.load();
    while (ahead_end > prev && !file->prefetched_to.compare_exchange_weak(prev, ahead_end)) {
    }
  }

  if (window > 0 && opts_.lookahead_files > 0 && !file->next_files_scheduled.exchange(true)) {
    auto ex = co_await asio::this_coro::executor;  // (named: see fetch_next_files)
    asio::co_spawn(ex, fetch_next_files(file), asio::detached);
  }

  auto& m = fs_metrics::get();
  m.reads.add();
  std::chrono::steady_clock::duration stalled{};
  bool served = false;  // by a cold small read's own GET
  if (first == last && end - offset <= opts_.cold_read_direct_max && !cache_->present({file->object_id, first})) {
    auto asked = std::chrono::steady_clock::now();
    served = co_await read_cold_direct(file, offset, end, &out);
    stalled += std::chrono::steady_clock::now() - asked;
  }
  for (std::uint64_t c = first; !served && c <= last; ++c) {
    // Named, not temporaries: GCC 12 destroys temporaries of a co_await expression twice.
    cache::chunk_key key{file->object_id, c};
    auto fetch = fetcher(file, c, true);
    auto asked = std::chrono::steady_clock::now();
    auto ref = co_await cache_->get(std::move(key), std::move(fetch));
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
    std::uint64_t chunk_start = c * cs;
    std::uint64_t from = std::max(offset, chunk_start) - chunk_start;
    std::uint64_t to = std::min<std::uint64_t>(end - chunk_start, ref->data().size());
    if (to <= from) co_return make_error_code(errc::truncated_body);  // object shorter than listed
    out.slices.push_back(ref->data().subspan(from, to - from));
    out.bytes += to - from;
    out.chunks.push_back(std::move(*ref));
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
  cache::chunk_key key{file->object_id, chunk};  // (named: GCC 12 and co_await temporaries)
  auto fetch = fetcher(file, chunk, true);
  auto ref = co_await cache_->get(std::move(key), std::move(fetch));
  (void)ref;  // cached for the reads that follow; released at once
}

awaitable<bool> filesystem::read_cold_direct(std::shared_ptr<open_file> file, std::uint64_t offset, std::uint64_t end,
                                             read_result* out) {
  const std::uint64_t chunk = offset / cache_->chunk_size();
  auto here = co_await asio::this_coro::executor;
  asio::co_spawn(here, fill_chunk(file, chunk), asio::detached);
  out->direct.resize(static_cast<std::size_t>(end - offset));
  std::span<char> dest(out->direct);
  auto got = co_await client().get(file->key, offset, dest, file->etag);
  if (!got || *got != dest.size()) {
    out->direct.clear();
    co_return false;
  }
  out->slices.push_back(std::span<const char>(out->direct));
  out->bytes = out->direct.size();
  co_return true;
}

}  // namespace valkyrie::fs
