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
  f->object = cache::make_version(opts_.bucket, n.key, n.etag, n.size);
  f->stream = std::make_shared<prefetch::stream>(n.size, cache_->chunk_size(), opts_.max_readahead_chunks);
  log::event("fs", spdlog::level::debug, "opened",
             {{"key", f->key}, {"etag", f->etag}, {"size", f->size}, {"keep_cache", f->keep_cache}});
  co_return f;
}

}  // namespace valkyrie::fs
