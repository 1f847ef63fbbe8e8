#include "fs/filesystem.hpp"

#include <algorithm>
#include <optional>

#include "core/background.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/reactor_pool.hpp"
#include "core/trace.hpp"
#include "fs/fs_metrics.hpp"

namespace valkyrie::fs {
filesystem::filesystem(options opts, std::vector<std::shared_ptr<s3::object_client>> clients,
                       std::shared_ptr<cache::chunk_cache> cache, std::vector<asio::any_io_executor> executors)
    : opts_(std::move(opts)), clients_(std::move(clients)), cache_(std::move(cache)),
      executors_(std::move(executors)) {
  known_.store(opts_.known_objects);
  // The prefetch budget in bytes follows the link as measured: enough in flight to keep it busy
  // with default-size chunks (requests are capped by --workers, set by the caller).
  link_->on_update([cache = cache_.get()](const prefetch::link_estimator& link) {
    cache->set_prefetch_bytes_limit(link.bytes_in_flight(cache->chunk_size()));
  });
  cache_->set_prefetch_bytes_limit(link_->bytes_in_flight(cache_->chunk_size()));
  if (opts_.order && opts_.order->has_order())
  {
    auto state = std::make_shared<order_state>();
    state->predictor = opts_.order;
    state->source = "manifest";
    state->since = std::chrono::system_clock::now();
    state->chunk_bytes = opts_.order_chunk_bytes;
    install_order(std::move(state));
  }
}

void filesystem::install_order(std::shared_ptr<const order_state> state) {
  // A training order is known: the cache keeps what will be read soonest (Belady) instead of
  // what was read last, which on an epoch bigger than the cache would keep nothing useful.
  // The disk tier places by the same rank (Belady across both; CLOCK without an order).
  cache::chunk_cache::rank_fn rank;
  if (state)
    rank = [order = state->predictor, skip = opts_.prefix.size(),
            cs = cache_->chunk_size()](const cache::chunk_id& k) {
      const std::string& key = k.object->key;
      if (key.size() < skip) return prefetch::predictor::never;
      // Ranked by where its bytes lie in default-size chunks, whatever the chunk's own layout.
      return order->next_use(std::string_view(key).substr(skip), k.offset() / cs);
    };
  if (opts_.disk) {
    opts_.disk->store().set_ranker(rank);
    // (whether the disk holds the whole order: then it takes every chunk memory evicts)
    opts_.disk->set_order_bytes(state ? state->chunk_bytes : 0);
  }
  cache_->set_eviction_ranker(std::move(rank));
  order_.store(std::move(state));
}

awaitable<result<order_update>> filesystem::set_order(std::string text, std::string source) {
  auto& hints = fs_metrics::get();
  auto known = known_.load();
  const std::uint64_t chunk = opts_.disk ? opts_.disk->store().chunk_size() : 0;
  // (in the background: it owns its inputs, since it may outlive this coroutine at shutdown)
  auto order_text = std::make_shared<const std::string>(std::move(text));
  auto parse = [order_text, chunk](std::shared_ptr<const object_map> objects) {
    return [order_text, chunk, objects = std::move(objects)] {
      return read_order(*order_text, objects ? *objects : object_map{}, chunk);
    };
  };
  const bool warm = is_warm_request(*order_text);
  if (warm && !opts_.disk) co_return std::make_error_code(std::errc::operation_not_supported);
  // (named, not temporaries in the co_await: GCC 12 destroyed such a temporary twice)
  auto check = in_background(opts_.background, parse(known));
  listed_order m = co_await std::move(check);
  const bool no_key_lines = !m.predictor->has_order() && m.problems.empty();
  if ((warm && !known) || (!no_key_lines && (!known || !m.problems.empty()))) {
    // Keys written since the last listing (or no listing yet): list the prefix once more.
    auto fresh = co_await list_all(client(), opts_.prefix);
    if (!fresh) co_return fresh.error();
    known = std::make_shared<const object_map>(std::move(*fresh));
    known_.store(known);
    auto recheck = in_background(opts_.background, parse(known));
    m = co_await std::move(recheck);
  }
  for (std::size_t i = 0; i < m.problems.size() && i < 20; ++i)
    log::event("fs", spdlog::level::warn, "training order: line skipped",
               {{"source", source}, {"line", m.problems[i].line}, {"key", m.problems[i].key},
                {"reason", m.problems[i].reason}});
  if (warm && (m.predictor->has_order() || m.problems.empty())) {
    auto warming = start_warm(std::move(m.predictor), known);
    co_return co_await std::move(warming);
  }
  if (!m.predictor->has_order() && !m.problems.empty()) {
    hints.orders_rejected.add();
    log::event("fs", spdlog::level::warn, "training order refused: no usable key; the previous order stays",
               {{"source", source}, {"skipped", m.problems.size()}});
    co_return make_error_code(errc::invalid_argument);
  }
  order_update u{m.predictor->keys().size(), m.problems.size(), no_key_lines};
  if (u.cleared) {
    install_order(nullptr);
    hints.orders_cleared.add();
    log::event("fs", spdlog::level::info, "training order cleared", {{"source", source}});
    co_return u;
  }
  auto state = std::make_shared<order_state>();
  state->predictor = std::move(m.predictor);
  state->source = std::move(source);
  state->problems = std::move(m.problems);
  state->chunk_bytes = m.chunk_bytes;
  state->since = std::chrono::system_clock::now();
  auto first = state->predictor->first(1);
  log::event("fs", spdlog::level::info, "training order set",
             {{"source", state->source}, {"keys", u.keys}, {"skipped", u.skipped}, {"first", first.front()}});
  install_order(std::move(state));
  hints.orders_set.add();
  // The first files are fetched now, before the loader asks for them.
  auto ex = co_await asio::this_coro::executor;  // (named: see fetch_next_files)
  asio::co_spawn(ex, warm_up_order(), asio::detached);
  co_return u;
}

std::string filesystem::order_text() const {
  auto state = order_.load();
  if (!state)
    return "# valkyrie training order: none (prefetch follows numbered names, then listing order)\n" + disk_text();
  const auto& keys = state->predictor->keys();
  std::string out = "# valkyrie training order from " + state->source + ": " + std::to_string(keys.size()) +
                    " keys, last read at index " + std::to_string(state->predictor->position()) + ", " +
                    std::to_string(state->problems.size()) + " lines skipped\n" + disk_text();
  for (std::size_t i = 0; i < state->problems.size() && i < 100; ++i)
    out += "# skipped line " + std::to_string(state->problems[i].line) + ": " + state->problems[i].key + ": " +
           state->problems[i].reason + "\n";
  for (auto& k : keys) out += k + '\n';
  return out;
}

attributes filesystem::control_attr(ino_t ino) const {
  attributes a;
  a.ino = ino;
  a.directory = ino == control_dir_ino;
  a.control = true;
  auto state = order_.load();
  a.mtime = ino == order_file_ino && state ? state->since : mounted_at_;
  return a;
}

void filesystem::warn_once(const std::string& key, const char* what) {
  {
    std::lock_guard lock(warned_mu_);
    if (warned_.size() > 100000 || !warned_.insert(key).second) return;
  }
  log::event("fs", spdlog::level::warn, what, {{"key", key}});
}

s3::object_client& filesystem::client() {
  int r = reactor_pool::current();
  return *clients_[r >= 0 && static_cast<std::size_t>(r) < clients_.size() ? r : 0];
}

bool filesystem::valid_name(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.size() <= 255 &&
         name.find('\0') == std::string_view::npos;
}

attributes filesystem::attr_of(ino_t ino, const node& n) {
  return {ino, n.directory, n.directory ? 0 : n.size, n.mtime};
}

result<filesystem::node*> filesystem::directory_node(ino_t ino) {
  node* n = inodes_.find(ino);
  if (!n) return make_error_code(errc::not_found);
  if (!n->directory) return make_error_code(errc::invalid_argument);
  return n;
}

bool filesystem::listing_fresh(const node& n) const {
  const auto* d = n.dir();
  return d && d->listing && std::chrono::steady_clock::now() - d->listed_at < opts_.metadata_ttl;
}

std::size_t filesystem::inode_count() const {
  std::lock_guard lock(mu_);
  return inodes_.size();
}

}  // namespace valkyrie::fs
