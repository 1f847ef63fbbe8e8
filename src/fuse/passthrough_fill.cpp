#include "fuse/passthrough_fill.hpp"

#include <cstring>
#include <optional>
#include <vector>

#include "core/background.hpp"
#include "core/reactor_pool.hpp"
#include "fuse/passthrough.hpp"
#include "fuse/session.hpp"

namespace valkyrie::fuse {
namespace {

// Backs the fill's fresh pages off the reactor.
awaitable<void> back_fresh_pages(session* s, const passthrough_files::fill& f) {
  if (f.fresh_from >= f.size) co_return;
  auto backed =
      in_background(s->pool().background(), [data = f.data, from = f.fresh_from, to = f.size] {
        passthrough_files::back_pages(data, from, to);
        return true;
      });
  co_await std::move(backed);  // (named: see core/background.hpp)
}

// Copies `chunk` to its place in the fill; false if it would not fit.
bool copy_chunk(const passthrough_files::fill& f, std::uint64_t at, const cache::chunk_ref& chunk) {
  for (auto piece : chunk.pieces()) {
    if (at + piece.size() > f.size) return false;
    std::memcpy(f.data + at, piece.data(), piece.size());
    at += piece.size();
  }
  return true;
}

}  // namespace

awaitable<int> passthrough_open(session* s, passthrough_files* pt, std::uint64_t ino,
                                std::shared_ptr<fs::open_file> file) {
  auto d = pt->on_open(ino, file->object);
  if (d.v == passthrough_files::verdict::page_cache) co_return -1;
  // Taken even when the kernel reads a file it already has: as a first read would, it moves the
  // chunks out of the prefetch zone. Chunks of the order's next files left there unread stay
  // wanted and fill the zone, so the prefetch of the files after them is refused (measured: the
  // training loop fell from 0.9 to 0.4 x its bound).
  auto refs = co_await s->filesystem().take_whole(file);
  if (d.v == passthrough_files::verdict::passthrough) co_return d.backing_id;
  auto f = refs ? pt->begin_fill(file->size) : std::nullopt;
  if (!f) co_return pt->open_unfilled(ino);
  co_await back_fresh_pages(s, *f);
  std::uint64_t at = 0;
  bool whole = true;
  for (auto& ref : *refs) {
    whole = whole && copy_chunk(*f, at, ref);
    at += ref.size();
    ref.release();
  }
  if (!whole || at != f->size) {
    pt->abandon_fill(*f);
    co_return pt->open_unfilled(ino);
  }
  auto id = pt->finish_fill(ino, file->object, *f);
  co_return id ? *id : -1;
}

awaitable<void> prepare_backing(session* s, passthrough_files* pt, cache::version_ref object) {
  if (!pt->begin_prepare(object)) co_return;
  co_await fill_prepared(s, pt, std::move(object));
}

awaitable<void> fill_prepared(session* s, passthrough_files* pt, cache::version_ref object) {
  auto f = pt->begin_fill(object->size, true);
  if (!f) {
    pt->defer_prepare(object);  // resumed by the release that leaves a file idle
    co_return;
  }
  co_await back_fresh_pages(s, *f);
  const std::uint64_t cs = s->filesystem().chunk_size();
  std::uint64_t at = 0;
  for (std::uint64_t c = 0; at < object->size; ++c) {
    auto ready = s->filesystem().chunk_when_ready(object, c);
    auto chunk = co_await std::move(ready);
    if (!chunk || chunk->size() != std::min<std::uint64_t>(cs, object->size - at) ||
        !copy_chunk(*f, at, *chunk)) {
      pt->abandon_fill(*f);
      pt->end_prepare(object, std::nullopt);
      co_return;
    }
    at += chunk->size();
  }
  pt->end_prepare(object, *f);
}

}  // namespace valkyrie::fuse
