#pragma once
// The simulator's object store: buckets of objects that are synthetic (content computed from a
// seed), files under --data, or bytes PUT at run time (kept in memory). Keys are kept sorted
// for ListObjectsV2. Thread-safe (a shared mutex; reads dominate).
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "s3/types.hpp"

namespace valkyrie::sim {

struct stored_object {
  enum class kind { synthetic, file, memory };
  kind source = kind::memory;
  s3::object_info info;
  std::uint64_t seed = 0;                     // synthetic
  std::filesystem::path path;                 // file
  std::shared_ptr<const std::string> data;    // memory
};

class store {
 public:
  void create_bucket(const std::string& bucket);
  bool has_bucket(const std::string& bucket) const;
  // Every subdirectory of dir is a bucket; every regular file under it an object.
  // Returns the number of objects added.
  std::size_t load_directory(const std::filesystem::path& dir);
  // COUNT objects of SIZE bytes named PREFIX + "shard_%06u.tar".
  void add_synthetic(const std::string& bucket, std::uint64_t count, std::uint64_t size,
                     const std::string& prefix);
  std::string put(const std::string& bucket, const std::string& key, std::string data);
  // PUT with If-None-Match: *: stores only when the key is absent (checked and stored under
  // one lock, so of two racing writers exactly one wins). nullopt: the key existed.
  std::optional<std::string> put_if_absent(const std::string& bucket, const std::string& key, std::string data);

  std::optional<stored_object> find(const std::string& bucket, const std::string& key) const;
  // nullopt: no such bucket.
  std::optional<s3::list_page> list(const std::string& bucket, const s3::list_request& req) const;

 private:
  std::optional<std::string> store_object(const std::string& bucket, const std::string& key, std::string data,
                                          bool only_if_absent);
  mutable std::shared_mutex mu_;
  struct bucket_data {
    std::map<std::string, stored_object> objects;
    std::map<std::string, s3::object_info> infos;  // what listings see, same keys
  };
  std::map<std::string, bucket_data> buckets_;
};

}  // namespace valkyrie::sim
