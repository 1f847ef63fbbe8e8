// The namespace: inodes over S3 keys and cached directory listings.
//
// Memory per entry (the target is <= 300 bytes of RSS with every entry of a big directory
// looked up, as `ls -l` does): the parent's listing keeps one 48-byte record and the name's
// bytes in one arena (dir_listing); an inode is one allocation with its name (inode_table),
// keeps its parent's slot (the key is derived, key_of), its ETag in 24 bytes (compact_etag) and
// the ETag it was opened at as a fingerprint; the (parent, name) index is a flat table of
// 8-byte cells that compares through the inodes. Listings are fetched with s3::parallel_list
// (pages in parallel over start-after ranges) and compacted page by page, so the S3 form of a
// page never piles up.
#include "fs/filesystem.hpp"

#include <algorithm>
#include <optional>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/reactor_pool.hpp"
#include "core/trace.hpp"
#include "fs/fs_metrics.hpp"
#include "s3/parallel_list.hpp"

namespace valkyrie::fs {

awaitable<result<object_map>> list_all(s3::object_client& client, std::string prefix) {
  object_map out;
  s3::list_request req;
  req.prefix = prefix;
  auto ec = co_await s3::parallel_list_into(client, req, [&out, &prefix](s3::list_page& page) {
    for (auto& o : page.objects) out.emplace(o.key.substr(prefix.size()), std::move(o));
  });
  if (ec) co_return ec;
  co_return out;
}

std::string filesystem::key_of(ino_t ino) const {
  std::vector<std::string_view> names;
  for (ino_t at = ino; at != root_ino;) {
    const node* n = inodes_.find(at);
    if (!n) break;  // cannot happen: children keep their parents
    names.push_back(n->name());
    at = inodes_.parent_of(*n);
  }
  std::string key = opts_.prefix;
  for (auto n = names.rbegin(); n != names.rend(); ++n) {
    key.append(*n);
    key += '/';
  }
  if (const node* n = inodes_.find(ino); ino != root_ino && n && !n->directory) key.pop_back();
  return key;
}

awaitable<result<std::shared_ptr<const dir_listing>>> filesystem::list_directory(
    std::string prefix, bool root, std::chrono::system_clock::time_point dir_mtime) {
  dir_listing::builder b;
  s3::list_request req;
  req.prefix = prefix;
  req.delimiter = "/";
  auto ec = co_await s3::parallel_list_into(client(), req, [&](s3::list_page& page) {
    for (auto& p : page.common_prefixes) {
      std::string_view name(p);
      name = name.substr(prefix.size(), name.size() - prefix.size() - 1);
      if (!valid_name(name)) {
        warn_once(p, "cannot be a directory name; skipped");
        continue;
      }
      if (root && opts_.control_files && name == control_dir_name) {
        warn_once(p, "is shadowed by the control directory (see --no-control-files)");
        continue;
      }
      b.add(name, true, 0, dir_mtime, {});
    }
    for (auto& o : page.objects) {
      if (o.key == prefix) continue;  // the directory's own "dir/" marker
      std::string_view name = std::string_view(o.key).substr(prefix.size());
      if (!valid_name(name)) {
        warn_once(o.key, "cannot be a file name; skipped");
        continue;
      }
      if (root && opts_.control_files && name == control_dir_name) {
        warn_once(o.key, "is shadowed by the control directory (see --no-control-files)");
        continue;
      }
      b.add(name, false, o.size, o.last_modified, o.etag);
    }
  });
  if (ec) co_return ec;
  // "a" and "a/..." both exist: the directory wins.
  co_return b.finish([&](std::string_view name) {
    warn_once(prefix + std::string(name), "is both a file and a directory; showing the directory");
  });
}

attributes filesystem::remember(ino_t parent, std::string_view name, const entry_info& e) {
  ino_t ino = inodes_.find_child(parent, name, e.directory);
  if (ino == 0) ino = inodes_.add(parent, name, e.directory);
  node* n = inodes_.find(ino);
  if (!e.directory) {
    n->size = e.size;
    if (e.etag) n->etag = *e.etag;
    n->mtime = e.mtime;
  } else if (n->mtime == std::chrono::system_clock::time_point{}) {
    n->mtime = inodes_.find(parent)->mtime;
  }
  n->add_lookup();
  return attr_of(ino, *n);
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
      const dir_listing& l = *p.dir()->listing;
      std::size_t i = l.find(name);
      if (i == dir_listing::npos) co_return make_error_code(errc::not_found);
      auto& e = l.at(i);
      co_return remember(parent, name, {e.directory, e.size, e.mtime, &e.etag});
    }
    dir_key = key_of(parent);
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
      if (is_dir) co_return remember(parent, name, {true, 0, {}, nullptr});
      compact_etag etag(file->second.etag);
      co_return remember(parent, name, {false, file->second.size, file->second.last_modified, &etag});
    }
  }
  // A targeted listing finds the file "dir/name" and the directory "dir/name/" without listing
  // the whole parent (a path can be opened without a readdir first).
  s3::list_request req;
  req.prefix = dir_key + name;
  req.delimiter = "/";
  std::optional<s3::object_info> file;
  bool dir = false;
  for (bool more = true; more;) {
    auto page = co_await client().list(req);
    if (!page) co_return page.error();
    for (auto& o : page->objects)
      if (o.key == req.prefix) file = o;
    for (auto& cp : page->common_prefixes)
      if (cp == req.prefix + "/") dir = true;
    more = page->truncated && !dir;
    if (more) req.continuation_token = page->next_continuation_token;
  }
  std::lock_guard lock(mu_);
  auto dir_node_now = directory_node(parent);
  if (!dir_node_now) co_return make_error_code(errc::not_found);
  if (dir) co_return remember(parent, name, {true, 0, {}, nullptr});
  if (file) {
    compact_etag etag(file->etag);
    co_return remember(parent, name, {false, file->size, file->last_modified, &etag});
  }
  co_return make_error_code(errc::not_found);
}

result<attributes> filesystem::getattr(ino_t ino) {
  if (is_control(ino)) return control_attr(ino);
  std::lock_guard lock(mu_);
  const node* n = inodes_.find(ino);
  if (!n) return make_error_code(errc::not_found);
  return attr_of(ino, *n);
}

void filesystem::forget(ino_t ino, std::uint64_t count) {
  if (ino == root_ino) return;
  std::lock_guard lock(mu_);
  node* n = inodes_.find(ino);
  if (!n) return;
  n->drop_lookups(count);
  inodes_.release(ino);
}

awaitable<result<std::shared_ptr<const dir_listing>>> filesystem::listing(ino_t ino) {
  if (is_control(ino)) {
    if (ino != control_dir_ino) co_return make_error_code(errc::invalid_argument);
    dir_listing::builder b;
    b.add(order_file_name, false, 0, control_attr(order_file_ino).mtime, {});
    co_return b.finish({});
  }
  std::string key;
  std::chrono::system_clock::time_point mtime;
  {
    std::lock_guard lock(mu_);
    auto dir = directory_node(ino);
    if (!dir) co_return dir.error();
    if (listing_fresh(**dir)) co_return (*dir)->dir()->listing;
    key = key_of(ino);
    mtime = (*dir)->mtime;
  }
  auto fresh = co_await list_directory(key, ino == root_ino, mtime);
  if (!fresh) co_return fresh.error();
  std::shared_ptr<const dir_listing> l = *fresh;
  std::lock_guard lock(mu_);
  node* dir = inodes_.find(ino);
  if (!dir) co_return make_error_code(errc::not_found);
  // Files already known take what the listing says, so that open needs no HEAD.
  if (dir->children > 0) {
    for (std::size_t i = 0; i < l->size(); ++i) {
      auto& e = l->at(i);
      if (e.directory) continue;
      if (node* n = inodes_.find(inodes_.find_child(ino, l->name(i), false))) {
        n->size = e.size;
        n->etag = e.etag;
        n->mtime = e.mtime;
      }
    }
  }
  dir->dir()->listing = l;
  dir->dir()->listed_at = std::chrono::steady_clock::now();
  co_return l;
}

attributes filesystem::entry_attr(ino_t parent, const dir_listing& l, std::size_t i) const {
  auto& e = l.at(i);
  attributes a{0, e.directory, e.size, e.mtime};
  if (is_control(parent)) return control_attr(order_file_ino);
  std::lock_guard lock(mu_);
  a.ino = inodes_.find_child(parent, l.name(i), e.directory);
  return a;
}

awaitable<result<std::vector<dir_entry>>> filesystem::readdir(ino_t ino) {
  auto snapshot = co_await listing(ino);
  if (!snapshot) co_return snapshot.error();
  std::shared_ptr<const dir_listing> l = *snapshot;
  std::vector<dir_entry> out;
  out.reserve(l->size());
  for (std::size_t i = 0; i < l->size(); ++i)
    out.push_back({std::string(l->name(i)), entry_attr(ino, *l, i), l->at(i).etag.str()});
  co_return out;
}

result<attributes> filesystem::remember_entry(ino_t parent, const dir_entry& e) {
  if (e.attr.control) return e.attr;  // fixed inodes: nothing to count
  std::lock_guard lock(mu_);
  auto dir = directory_node(parent);
  if (!dir) return dir.error();
  compact_etag etag(e.etag);
  return remember(parent, e.name, {e.attr.directory, e.attr.size, e.attr.mtime, &etag});
}

result<attributes> filesystem::remember_entry(ino_t parent, const dir_listing& l, std::size_t i) {
  if (is_control(parent)) return control_attr(order_file_ino);
  std::lock_guard lock(mu_);
  auto dir = directory_node(parent);
  if (!dir) return dir.error();
  auto& e = l.at(i);
  return remember(parent, l.name(i), {e.directory, e.size, e.mtime, &e.etag});
}

void filesystem::mark_stale(ino_t ino) {
  std::lock_guard lock(mu_);
  node* n = inodes_.find(ino);
  if (!n) return;
  n->etag.clear();
  if (node* p = inodes_.find(inodes_.parent_of(*n)); p && p->dir()) p->dir()->listing.reset();
}

awaitable<result<std::shared_ptr<open_file>>> filesystem::open(ino_t ino) {
  std::string key;
  {
    std::lock_guard lock(mu_);
    const node* n = inodes_.find(ino);
    if (!n) co_return make_error_code(errc::not_found);
    if (n->directory) co_return make_error_code(errc::invalid_argument);
    if (n->etag.empty()) key = key_of(ino);
  }
  std::optional<s3::object_info> fresh;
  if (!key.empty()) {
    auto info = co_await client().head(key);
    if (!info) co_return info.error();
    fresh = *info;
  }
  std::lock_guard lock(mu_);
  node* found = inodes_.find(ino);
  if (!found) co_return make_error_code(errc::not_found);
  node& n = *found;
  if (fresh) {
    n.etag.assign(fresh->etag);
    n.size = fresh->size;
    n.mtime = fresh->last_modified;
  }
  auto f = std::make_shared<open_file>();
  // The kernel may keep its page cache across opens only while the object is the same version.
  const std::uint64_t version = n.etag.fingerprint();
  f->keep_cache = n.opened_etag == 0 || n.opened_etag == version;
  n.opened_etag = version;
  f->ino = ino;
  f->key = key_of(ino);
  f->etag = n.etag.str();
  f->size = n.size;
  f->object = cache::make_version(opts_.bucket, f->key, f->etag, n.size);
  f->stream = std::make_shared<prefetch::stream>(n.size, cache_->chunk_size(), opts_.max_readahead_chunks);
  log::event("fs", spdlog::level::debug, "opened",
             {{"key", f->key}, {"etag", f->etag}, {"size", f->size}, {"keep_cache", f->keep_cache}});
  co_return f;
}

}  // namespace valkyrie::fs
