// Prewarm of the disk tier (`valkyrie warm`): an order text that starts with the line "#!warm",
// written to /.valkyrie/order, is not a training order: it asks for the disk tier to be filled
// with those files' chunks, in that order (every file in listing order when it names none), up
// to the tier's size (the disk bytes each chunk takes: a slot, or its share of a packed slot).
// Chunks go from S3 straight to the disk through a few buffers of the job's own (warm_workers, one
// chunk each): the memory cache, the order in force and the readers' prefetch budget are not
// touched. Chunks already on the disk are counted, not fetched. A new warm request cancels the one
// running. Progress is the "# warm:" line of the order file.
#include <cstdlib>
#include <string_view>
#include <unordered_set>

#include "core/background.hpp"
#include "core/log.hpp"
#include "fs/filesystem.hpp"

namespace valkyrie::fs {

namespace {
constexpr unsigned warm_workers = 8;
}

bool filesystem::is_warm_request(std::string_view text) {
  return text.substr(0, 6) == "#!warm" && (text.size() == 6 || text[6] == '\n' || text[6] == '\r');
}

namespace {
// What a warm request will fetch: its files' chunks in order, up to the disk tier's slots,
// packing small chunks as the store does (in the plan's order; the workers' writes finish nearly
// in it). Pure (the store's geometry is fixed at start-up): planned in the background.
struct warm_plan {
  std::vector<cache::chunk_id> chunks;
  std::uint64_t bytes = 0;
  std::size_t files = 0;
};

warm_plan plan_warm(const std::vector<std::string>& keys, const object_map& known,
                    const tier::disk_store& store, const cache::chunk_cache& cache,
                    const std::string& bucket, const std::string& prefix) {
  warm_plan plan;
  std::unordered_set<std::string_view> seen;
  const std::uint64_t cs = cache.chunk_size();
  std::uint64_t slots_left = store.slots(), open_room = 0;
  bool full = false;
  auto add = [&](const std::string& k, const s3::object_info& info) {
    auto object = cache::make_version(bucket, prefix + k, info.etag, info.size);
    for (std::uint64_t i = 0; i * cs < info.size && !full; ++i) {
      auto id = cache.chunk(object, i);
      if (!store.admits(id)) continue;
      const std::uint64_t need = store.footprint(id);
      const bool packed = need < store.slot_stride();
      if (packed && need <= open_room) {
        open_room -= need;
      } else if (slots_left == 0) {
        full = true;
        break;
      } else {
        --slots_left;
        open_room = packed ? store.slot_stride() - need : open_room;
      }
      plan.bytes += id.length();
      plan.chunks.push_back(std::move(id));
    }
  };
  if (keys.empty()) {  // every file, in listing order
    for (auto it = known.begin(); it != known.end() && !full; ++it, ++plan.files)
      add(it->first, it->second);
    return plan;
  }
  for (auto& k : keys) {
    if (full) break;
    if (!seen.insert(k).second) continue;  // (a later epoch of the same file)
    if (auto it = known.find(k); it != known.end()) add(k, it->second);
  }
  plan.files = seen.size();
  return plan;
}
}  // namespace

awaitable<result<order_update>> filesystem::start_warm(
    std::shared_ptr<const prefetch::predictor> order, std::shared_ptr<const object_map> known) {
  if (!opts_.disk) co_return std::make_error_code(std::errc::operation_not_supported);
  // (1.28 M keys: about a second of work, which would hold this reactor; the work owns its inputs)
  auto work = [order, known, disk = opts_.disk, cache = cache_, bucket = opts_.bucket,
               prefix = opts_.prefix] {
    return plan_warm(order->keys(), *known, disk->store(), *cache, bucket, prefix);
  };
  auto planning = in_background(opts_.background, std::move(work));
  warm_plan planned = co_await std::move(planning);
  auto& store = opts_.disk->store();
  auto plan = std::make_shared<const std::vector<cache::chunk_id>>(std::move(planned.chunks));
  auto st = std::make_shared<warm_state>();
  st->planned_bytes = planned.bytes;
  st->planned_chunks = plan->size();
  st->files = planned.files;
  if (auto old = warm_.exchange(st)) old->cancelled = true;
  log::event("fs", spdlog::level::info, "disk tier warm-up started",
             {{"files", st->files},
              {"chunks", plan->size()},
              {"bytes", st->planned_bytes.load()},
              {"tier_slots", store.slots()}});
  auto here = co_await asio::this_coro::executor;
  auto next = std::make_shared<std::atomic<std::size_t>>(0);
  st->active = warm_workers;
  for (unsigned w = 0; w < warm_workers; ++w)
    asio::co_spawn(executor_for(w, here), warm_worker(st, plan, next), asio::detached);
  co_return order_update{planned.files, 0, false};
}

awaitable<void> filesystem::warm_worker(std::shared_ptr<warm_state> st,
                                        std::shared_ptr<const std::vector<cache::chunk_id>> plan,
                                        std::shared_ptr<std::atomic<std::size_t>> next) {
  auto& store = opts_.disk->store();
  const std::size_t bytes = (std::size_t{cache_->chunk_size()} + 4095) / 4096 * 4096;
  std::unique_ptr<char, decltype(&std::free)> buf(
      static_cast<char*>(std::aligned_alloc(4096, bytes)), &std::free);
  while (buf && !st->cancelled) {
    const std::size_t i = next->fetch_add(1);
    if (i >= plan->size()) break;
    const cache::chunk_id id = (*plan)[i];
    const std::size_t len = id.length();
    if (store.contains(id)) {
      ++st->present_chunks;
    } else {
      auto fetch = s3_fetcher(id, false);
      cache::chunk_buffers dest;
      dest.emplace_back(buf.get(), len);
      auto r = co_await fetch(std::move(dest));
      if (r && *r == len) {
        std::vector<std::span<const char>> data;
        data.emplace_back(buf.get(), len);
        if (co_await store.write(id, std::move(data))) ++st->written_chunks;
      } else {
        ++st->failed_chunks;
      }
    }
    ++st->done_chunks;
    st->done_bytes += len;
  }
  if (--st->active == 0) {
    st->finished = true;
    const char* what = st->cancelled ? "disk tier warm-up cancelled" : "disk tier warm-up done";
    log::event("fs", spdlog::level::info, what,
               {{"chunks", st->done_chunks.load()},
                {"written", st->written_chunks.load()},
                {"present", st->present_chunks.load()},
                {"failed", st->failed_chunks.load()}});
  }
}

std::string filesystem::disk_text() const {
  if (!opts_.disk) return "# disk tier: none\n";
  auto s = opts_.disk->store().stats();
  std::string out = "# disk tier: " + std::to_string(s.used_bytes) + " of " +
                    std::to_string(std::uint64_t{s.slots} * opts_.disk->store().chunk_size()) +
                    " bytes used, " + std::to_string(s.chunks) + " chunks in " +
                    std::to_string(s.used_slots) + " of " + std::to_string(s.slots) + " slots (" +
                    std::to_string(s.packed_chunks) + " small ones packed in " +
                    std::to_string(s.packed_slots) + ")\n";
  if (auto w = warm_.load())
    out += std::string("# warm: ") +
           (w->cancelled  ? "cancelled"
            : w->finished ? "done"
                          : "running") +
           ", " + std::to_string(w->done_chunks.load()) + " of " +
           std::to_string(w->planned_chunks.load()) + " chunks, " +
           std::to_string(w->done_bytes.load()) + " of " + std::to_string(w->planned_bytes.load()) +
           " bytes, " + std::to_string(w->written_chunks.load()) + " written, " +
           std::to_string(w->present_chunks.load()) + " already there, " +
           std::to_string(w->failed_chunks.load()) + " failed\n";
  return out;
}

}  // namespace valkyrie::fs
