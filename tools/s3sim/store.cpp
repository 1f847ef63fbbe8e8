#include "store.hpp"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <cstdio>

#include "../common/synthetic.hpp"
#include "s3/listing.hpp"

namespace valkyrie::sim {
namespace {
std::string hex(const unsigned char* p, std::size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}
std::string md5_etag(const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_md5(), nullptr);
  return "\"" + hex(out, len) + "\"";
}
}  // namespace

void store::create_bucket(const std::string& bucket) {
  std::unique_lock lock(mu_);
  buckets_[bucket];
}

bool store::has_bucket(const std::string& bucket) const {
  std::shared_lock lock(mu_);
  return buckets_.count(bucket) > 0;
}

std::size_t store::load_directory(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::size_t added = 0;
  std::unique_lock lock(mu_);
  for (auto& b : fs::directory_iterator(dir)) {
    if (!b.is_directory()) continue;
    auto& bucket = buckets_[b.path().filename().string()];
    for (auto& f : fs::recursive_directory_iterator(b.path())) {
      if (!f.is_regular_file()) continue;
      struct stat st {};
      if (::stat(f.path().c_str(), &st) != 0) continue;
      stored_object o;
      o.source = stored_object::kind::file;
      o.path = f.path();
      o.info.key = fs::relative(f.path(), b.path()).generic_string();
      o.info.size = static_cast<std::uint64_t>(st.st_size);
      // Files are not hashed at start-up (they may be large): the ETag is derived from the
      // file's identity and modification time, so it changes whenever the file does.
      std::uint64_t id = synthetic::seed_for(
          std::to_string(st.st_ino) + ":" + std::to_string(st.st_size),
          std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec));
      // Multipart-style ("...-1"), as S3 gives uploads in parts: clients (rclone) check an
      // ETag without "-" as the body's MD5.
      char etag[48];
      std::snprintf(etag, sizeof etag, "\"%016llx%016llx-1\"", static_cast<unsigned long long>(id),
                    static_cast<unsigned long long>(st.st_size));
      o.info.etag = etag;
      o.info.last_modified =
          std::chrono::system_clock::time_point(std::chrono::seconds(st.st_mtim.tv_sec));
      bucket.infos[o.info.key] = o.info;
      bucket.objects[o.info.key] = std::move(o);
      ++added;
    }
  }
  return added;
}

namespace {
// As S3 would give: the body's MD5 for objects small enough to be uploaded in one PUT, a
// multipart ETag ("<hex>-<parts of 8 MiB>") for bigger ones, so that clients that check
// single-part ETags as MD5s (rclone) can.
std::string synthetic_etag(std::uint64_t seed, std::uint64_t size) {
  constexpr std::uint64_t part = 8 << 20;
  char etag[64];
  if (size <= part) {
    std::string body(size, '\0');
    synthetic::fill(seed, 0, body);
    return md5_etag(body);
  }
  std::snprintf(etag, sizeof etag, "\"%016llx%016llx-%llu\"", static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(size),
                static_cast<unsigned long long>((size + part - 1) / part));
  return etag;
}
}  // namespace

void store::add_synthetic(const std::string& bucket_name, std::uint64_t count, std::uint64_t size,
                          const std::string& prefix) {
  std::unique_lock lock(mu_);
  auto& bucket = buckets_[bucket_name];
  auto now = std::chrono::system_clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "shard_%06llu.tar", static_cast<unsigned long long>(i));
    stored_object o;
    o.source = stored_object::kind::synthetic;
    o.info.key = prefix + name;
    o.info.size = size;
    o.seed = synthetic::seed_for(bucket_name, o.info.key);
    o.info.etag = synthetic_etag(o.seed, size);
    o.info.last_modified = std::chrono::time_point_cast<std::chrono::seconds>(now);
    bucket.infos[o.info.key] = o.info;
    bucket.objects[o.info.key] = std::move(o);
  }
}

std::string store::put(const std::string& bucket_name, const std::string& key, std::string data) {
  return *store_object(bucket_name, key, std::move(data), false);
}

std::optional<std::string> store::put_if_absent(const std::string& bucket_name,
                                                const std::string& key, std::string data) {
  return store_object(bucket_name, key, std::move(data), true);
}

std::optional<std::string> store::store_object(const std::string& bucket_name,
                                               const std::string& key, std::string data,
                                               bool only_if_absent) {
  stored_object o;
  o.source = stored_object::kind::memory;
  o.info.key = key;
  o.info.size = data.size();
  o.info.etag = md5_etag(data);
  o.info.last_modified =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  o.data = std::make_shared<const std::string>(std::move(data));
  std::unique_lock lock(mu_);
  auto& bucket = buckets_[bucket_name];
  if (only_if_absent && bucket.objects.count(key)) return std::nullopt;
  std::string etag = o.info.etag;
  bucket.infos[key] = o.info;
  bucket.objects[key] = std::move(o);
  return etag;
}

std::optional<stored_object> store::find(const std::string& bucket, const std::string& key) const {
  std::shared_lock lock(mu_);
  auto b = buckets_.find(bucket);
  if (b == buckets_.end()) return std::nullopt;
  auto it = b->second.objects.find(key);
  if (it == b->second.objects.end()) return std::nullopt;
  return it->second;
}

std::optional<s3::list_page> store::list(const std::string& bucket,
                                         const s3::list_request& req) const {
  std::shared_lock lock(mu_);
  auto b = buckets_.find(bucket);
  if (b == buckets_.end()) return std::nullopt;
  return s3::paginate(b->second.infos, req);
}

}  // namespace valkyrie::sim
