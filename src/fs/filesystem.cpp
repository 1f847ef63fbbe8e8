#include "fs/filesystem.hpp"

#include <algorithm>
#include <optional>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/reactor_pool.hpp"
#include "core/trace.hpp"

namespace valkyrie::fs {
namespace {
struct fs_metrics {
  metrics::counter& reads;
  metrics::counter& read_bytes;
  metrics::counter& stalled_reads;
  metrics::counter& stall_ns;
  metrics::histogram& stall;
  metrics::counter& files_prefetched;
  metrics::counter& stale_objects;
  metrics::counter& orders_set;
  metrics::counter& orders_rejected;
  metrics::counter& orders_cleared;

  static fs_metrics& get() {
    auto& r = metrics::registry::global();
    auto order_updates = [&r](const char* result) -> metrics::counter& {
      return r.get_counter("valkyrie_order_updates_total", "Training orders received (set, refused, cleared)",
                           {{"result", result}});
    };
    static fs_metrics m{
        r.get_counter("valkyrie_reads_total", "Reads served by the filesystem"),
        r.get_counter("valkyrie_read_bytes_total", "Bytes returned to readers"),
        r.get_counter("valkyrie_read_stalls_total", "Reads that waited for S3 (some chunk was not cached)"),
        r.get_counter("valkyrie_read_stall_seconds_total", "Time readers spent waiting for S3", {}, 1e-9),
        r.get_histogram("valkyrie_read_stall_seconds", "Time one stalled read waited for S3",
                        metrics::latency_buckets(), 1e-9),
        r.get_counter("valkyrie_prefetch_files_total", "Whole files scheduled for prefetch (next files, warm-up)"),
        r.get_counter("valkyrie_stale_objects_total", "Reads that found the object changed since open (ESTALE)"),
        order_updates("set"),
        order_updates("refused"),
        order_updates("cleared"),
    };
    return m;
  }
};
}  // namespace

filesystem::filesystem(options opts, std::vector<std::shared_ptr<s3::object_client>> clients,
                       std::shared_ptr<cache::chunk_cache> cache, std::vector<asio::any_io_executor> executors)
    : opts_(std::move(opts)), clients_(std::move(clients)), cache_(std::move(cache)),
      executors_(std::move(executors)) {
  node root;
  root.ino = root_ino;
  root.parent = root_ino;
  root.key = opts_.prefix;
  root.directory = true;
  root.lookups = 1;  // the kernel holds the root forever
  root.mtime = std::chrono::system_clock::now();
  nodes_.emplace(root_ino, std::move(root));
  known_.store(opts_.known_objects);
  if (opts_.order && opts_.order->has_order())
    install_order(std::make_shared<const order_state>(
        order_state{opts_.order, "manifest", {}, std::chrono::system_clock::now()}));
}

void filesystem::install_order(std::shared_ptr<const order_state> state) {
  // A training order is known: the cache keeps what will be read soonest (Belady) instead of
  // what was read last, which on an epoch bigger than the cache would keep nothing useful.
  if (state)
    cache_->set_eviction_ranker([order = state->predictor, skip = opts_.prefix.size()](const cache::chunk_key& k) {
      std::size_t end = k.object.find('\0');
      if (end == std::string::npos || end < skip) return prefetch::predictor::never;
      return order->next_use(std::string_view(k.object).substr(skip, end - skip), k.index);
    });
  else
    cache_->set_eviction_ranker(nullptr);
  order_.store(std::move(state));
}

awaitable<result<object_map>> list_all(s3::object_client& client, std::string prefix) {
  object_map out;
  s3::list_request req;
  req.prefix = prefix;
  for (;;) {
    auto page = co_await client.list(req);
    if (!page) co_return page.error();
    for (auto& o : page->objects) out.emplace(o.key.substr(prefix.size()), o);
    if (!page->truncated) co_return out;
    req.continuation_token = page->next_continuation_token;
  }
}

awaitable<result<order_update>> filesystem::set_order(std::string text, std::string source) {
  auto& hints = fs_metrics::get();
  auto known = known_.load();
  auto parse = [&text](const object_map& objects) {
    return prefetch::parse_manifest(text, [&objects](const std::string& k) { return objects.count(k) > 0; });
  };
  prefetch::manifest m = parse(known ? *known : object_map{});
  const bool no_key_lines = m.order.empty() && m.problems.empty();
  if (!no_key_lines && (!known || !m.problems.empty())) {
    // Keys written since the last listing (or no listing yet): list the prefix once more.
    auto fresh = co_await list_all(client(), opts_.prefix);
    if (!fresh) co_return fresh.error();
    known = std::make_shared<const object_map>(std::move(*fresh));
    known_.store(known);
    m = parse(*known);
  }
  for (std::size_t i = 0; i < m.problems.size() && i < 20; ++i)
    log::event("fs", spdlog::level::warn, "training order: line skipped",
               {{"source", source}, {"line", m.problems[i].line}, {"key", m.problems[i].key},
                {"reason", m.problems[i].reason}});
  if (m.order.empty() && !m.problems.empty()) {
    hints.orders_rejected.add();
    log::event("fs", spdlog::level::warn, "training order refused: no usable key; the previous order stays",
               {{"source", source}, {"skipped", m.problems.size()}});
    co_return make_error_code(errc::invalid_argument);
  }
  order_update u{m.order.size(), m.problems.size(), no_key_lines};
  if (u.cleared) {
    install_order(nullptr);
    hints.orders_cleared.add();
    log::event("fs", spdlog::level::info, "training order cleared", {{"source", source}});
    co_return u;
  }
  auto state = std::make_shared<order_state>();
  state->predictor = std::make_shared<prefetch::predictor>(std::move(m.order));
  state->source = std::move(source);
  state->problems = std::move(m.problems);
  state->since = std::chrono::system_clock::now();
  auto first = state->predictor->first(std::max(1u, opts_.lookahead_files));
  log::event("fs", spdlog::level::info, "training order set",
             {{"source", state->source}, {"keys", u.keys}, {"skipped", u.skipped}, {"first", first.front()}});
  install_order(std::move(state));
  hints.orders_set.add();
  // The first files are fetched now, before the loader asks for them.
  auto ex = co_await asio::this_coro::executor;  // (named: see fetch_next_files)
  asio::co_spawn(ex, warm_up(std::move(first)), asio::detached);
  co_return u;
}

std::string filesystem::order_text() const {
  auto state = order_.load();
  if (!state) return "# valkyrie training order: none (prefetch follows numbered names, then listing order)\n";
  const auto& keys = state->predictor->keys();
  std::string out = "# valkyrie training order from " + state->source + ": " + std::to_string(keys.size()) +
                    " keys, last read at index " + std::to_string(state->predictor->position()) + ", " +
                    std::to_string(state->problems.size()) + " lines skipped\n";
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

bool filesystem::valid_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.size() <= 255 &&
         name.find('\0') == std::string::npos;
}

attributes filesystem::attr_of(const node& n) {
  return {n.ino, n.directory, n.directory ? 0 : n.size, n.mtime};
}

filesystem::listed_entry filesystem::from_listing(const dir_entry& e) {
  listed_entry le{e.name, e.attr.directory, {}};
  le.info.size = e.attr.size;
  le.info.last_modified = e.attr.mtime;
  le.info.etag = e.etag;
  return le;
}

result<filesystem::node*> filesystem::directory_node(ino_t ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return make_error_code(errc::not_found);
  if (!it->second.directory) return make_error_code(errc::invalid_argument);
  return &it->second;
}

bool filesystem::listing_fresh(const node& n) const {
  return n.listed && std::chrono::steady_clock::now() - n.listed_at < opts_.metadata_ttl;
}

std::size_t filesystem::inode_count() const {
  std::lock_guard lock(mu_);
  return nodes_.size();
}

awaitable<result<std::vector<filesystem::listed_entry>>> filesystem::list_directory(std::string prefix) {
  std::vector<listed_entry> out;
  std::unordered_map<std::string, std::size_t> seen;  // name -> index in out
  s3::list_request req;
  req.prefix = prefix;
  req.delimiter = "/";
  for (;;) {
    auto page = co_await client().list(req);
    if (!page) co_return page.error();
    for (auto& p : page->common_prefixes) {
      std::string name = p.substr(prefix.size(), p.size() - prefix.size() - 1);
      if (!valid_name(name)) {
        warn_once(p, "cannot be a directory name; skipped");
        continue;
      }
      if (auto it = seen.find(name); it != seen.end()) {
        // "a" and "a/..." both exist: the directory wins.
        warn_once(prefix + name, "is both a file and a directory; showing the directory");
        out[it->second] = {name, true, {}};
        continue;
      }
      seen.emplace(name, out.size());
      out.push_back({name, true, {}});
    }
    for (auto& o : page->objects) {
      if (o.key == prefix) continue;  // the directory's own "dir/" marker
      std::string name = o.key.substr(prefix.size());
      if (!valid_name(name)) {
        warn_once(o.key, "cannot be a file name; skipped");
        continue;
      }
      if (auto it = seen.find(name); it != seen.end()) {
        warn_once(o.key, "is both a file and a directory; showing the directory");
        continue;
      }
      seen.emplace(name, out.size());
      out.push_back({name, false, o});
    }
    if (!page->truncated) break;
    req.continuation_token = page->next_continuation_token;
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  co_return out;
}

attributes filesystem::remember(node& parent, const listed_entry& e) {
  std::string key = parent.key + e.name + (e.directory ? "/" : "");
  std::string index = (e.directory ? "d" : "f") + key;
  auto it = by_key_.find(index);
  node* n = nullptr;
  if (it != by_key_.end()) {
    n = &nodes_.at(it->second);
  } else {
    ino_t ino = next_ino_++;
    node fresh;
    fresh.ino = ino;
    fresh.parent = parent.ino;
    fresh.name = e.name;
    fresh.key = key;
    fresh.directory = e.directory;
    n = &nodes_.emplace(ino, std::move(fresh)).first->second;
    by_key_.emplace(index, ino);
  }
  if (!e.directory) {
    n->size = e.info.size;
    n->etag = e.info.etag;
    n->mtime = e.info.last_modified;
  } else if (n->mtime == std::chrono::system_clock::time_point{}) {
    n->mtime = parent.mtime;
  }
  ++n->lookups;
  return attr_of(*n);
}

awaitable<result<attributes>> filesystem::lookup(ino_t parent, std::string name) {
  if (!valid_name(name)) co_return make_error_code(errc::not_found);
  if (opts_.control_files) {
    if (parent == root_ino && name == control_dir_name) co_return control_attr(control_dir_ino);
    if (parent == control_dir_ino)
      co_return name == order_file_name ? result<attributes>(control_attr(order_file_ino))
                                        : result<attributes>(make_error_code(errc::not_found));
  }
  std::string dir_key;
  {
    std::lock_guard lock(mu_);
    auto dir = directory_node(parent);
    if (!dir) co_return dir.error();
    node& p = **dir;
    if (listing_fresh(p)) {
      // Answer from the cached listing.
      for (auto& e : p.listing)
        if (e.name == name) co_return remember(p, from_listing(e));
      co_return make_error_code(errc::not_found);
    }
    dir_key = p.key;
  }
  // The start-up listing (taken to check a manifest) knows every key: answer from it.
  if (auto known_objects = known_.load(); known_objects && dir_key.size() >= opts_.prefix.size()) {
    const auto& known = *known_objects;
    std::string relative = dir_key.substr(opts_.prefix.size()) + name;
    auto below = known.lower_bound(relative + "/");
    bool is_dir = below != known.end() && below->first.compare(0, relative.size() + 1, relative + "/") == 0;
    auto file = known.find(relative);
    if (is_dir || file != known.end()) {
      std::lock_guard lock(mu_);
      auto dir = directory_node(parent);
      if (!dir) co_return dir.error();
      if (is_dir) co_return remember(**dir, listed_entry{name, true, {}});
      s3::object_info info = file->second;
      co_return remember(**dir, listed_entry{name, false, info});
    }
  }
  // A targeted listing finds the file "dir/name" and the directory "dir/name/" without listing
  // the whole parent (a path can be opened without a readdir first).
  s3::list_request req;
  req.prefix = dir_key + name;
  req.delimiter = "/";
  std::optional<listed_entry> file, dir;
  for (bool more = true; more;) {
    auto page = co_await client().list(req);
    if (!page) co_return page.error();
    for (auto& o : page->objects)
      if (o.key == req.prefix) file = listed_entry{name, false, o};
    for (auto& cp : page->common_prefixes)
      if (cp == req.prefix + "/") dir = listed_entry{name, true, {}};
    more = page->truncated && !dir;
    if (more) req.continuation_token = page->next_continuation_token;
  }
  std::lock_guard lock(mu_);
  auto it = nodes_.find(parent);
  if (it == nodes_.end()) co_return make_error_code(errc::not_found);
  if (dir) co_return remember(it->second, *dir);
  if (file) co_return remember(it->second, *file);
  co_return make_error_code(errc::not_found);
}

result<attributes> filesystem::getattr(ino_t ino) {
  if (is_control(ino)) return control_attr(ino);
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return make_error_code(errc::not_found);
  return attr_of(it->second);
}

void filesystem::forget(ino_t ino, std::uint64_t count) {
  if (ino == root_ino) return;
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  node& n = it->second;
  n.lookups = count >= n.lookups ? 0 : n.lookups - count;
  if (n.lookups == 0) {
    by_key_.erase((n.directory ? "d" : "f") + n.key);
    nodes_.erase(it);
  }
}

awaitable<result<std::vector<dir_entry>>> filesystem::readdir(ino_t ino) {
  if (is_control(ino)) {
    if (ino != control_dir_ino) co_return make_error_code(errc::invalid_argument);
    co_return std::vector<dir_entry>{{order_file_name, control_attr(order_file_ino), {}}};
  }
  std::string key;
  {
    std::lock_guard lock(mu_);
    auto dir = directory_node(ino);
    if (!dir) co_return dir.error();
    key = (*dir)->key;
    if (listing_fresh(**dir)) co_return (*dir)->listing;
  }
  auto entries = co_await list_directory(key);
  if (!entries) co_return entries.error();
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) co_return make_error_code(errc::not_found);
  node& n = it->second;
  std::vector<dir_entry> listing;
  listing.reserve(entries->size());
  for (auto& e : *entries) {
    if (opts_.control_files && ino == root_ino && e.name == control_dir_name) {
      warn_once(n.key + e.name, "is shadowed by the control directory (see --no-control-files)");
      continue;
    }
    dir_entry d;
    d.name = e.name;
    d.attr.directory = e.directory;
    d.attr.size = e.info.size;
    d.attr.mtime = e.directory ? n.mtime : e.info.last_modified;
    d.etag = e.info.etag;
    // Files seen in a listing are remembered with their ETag so that open needs no HEAD.
    auto index = std::string(e.directory ? "d" : "f") + n.key + e.name + (e.directory ? "/" : "");
    if (auto known = by_key_.find(index); known != by_key_.end()) {
      node& c = nodes_.at(known->second);
      if (!e.directory) {
        c.size = e.info.size;
        c.etag = e.info.etag;
        c.mtime = e.info.last_modified;
      }
      d.attr.ino = c.ino;
    }
    listing.push_back(std::move(d));
  }
  n.listing = listing;
  n.listed = true;
  n.listed_at = std::chrono::steady_clock::now();
  co_return listing;
}

result<attributes> filesystem::remember_entry(ino_t parent, const dir_entry& e) {
  if (e.attr.control) return e.attr;  // fixed inodes: nothing to count
  std::lock_guard lock(mu_);
  auto dir = directory_node(parent);
  if (!dir) return dir.error();
  return remember(**dir, from_listing(e));
}

void filesystem::mark_stale(ino_t ino) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  it->second.etag.clear();
  if (auto p = nodes_.find(it->second.parent); p != nodes_.end()) p->second.listed = false;
}

awaitable<result<std::shared_ptr<open_file>>> filesystem::open(ino_t ino) {
  std::string key;
  {
    std::lock_guard lock(mu_);
    auto it = nodes_.find(ino);
    if (it == nodes_.end()) co_return make_error_code(errc::not_found);
    if (it->second.directory) co_return make_error_code(errc::invalid_argument);
    if (it->second.etag.empty()) key = it->second.key;
  }
  std::optional<s3::object_info> fresh;
  if (!key.empty()) {
    auto info = co_await client().head(key);
    if (!info) co_return info.error();
    fresh = *info;
  }
  std::lock_guard lock(mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) co_return make_error_code(errc::not_found);
  node& n = it->second;
  if (fresh) {
    n.etag = fresh->etag;
    n.size = fresh->size;
    n.mtime = fresh->last_modified;
  }
  auto f = std::make_shared<open_file>();
  // The kernel may keep its page cache across opens only while the object is the same version.
  f->keep_cache = n.opened_etag.empty() || n.opened_etag == n.etag;
  n.opened_etag = n.etag;
  f->ino = ino;
  f->key = n.key;
  f->etag = n.etag;
  f->size = n.size;
  f->object_id = n.key + '\0' + n.etag;
  log::event("fs", spdlog::level::debug, "opened",
             {{"key", f->key}, {"etag", f->etag}, {"size", f->size}, {"keep_cache", f->keep_cache}});
  co_return f;
}

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
