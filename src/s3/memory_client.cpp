#include "s3/memory_client.hpp"

#include <cstring>

#include "core/errors.hpp"
#include "s3/listing.hpp"
#include "s3/sigv4.hpp"

namespace valkyrie::s3 {

std::string memory_client::put(const std::string& key, std::string data) {
  std::lock_guard lock(mu_);
  return store(key, std::move(data));
}

std::string memory_client::store(const std::string& key, std::string data) {
  object o;
  o.info.key = key;
  o.info.size = data.size();
  // Distinct per version even for equal contents, as an overwrite on S3 may be.
  o.info.etag = "\"" + sha256_hex(data + std::to_string(++version_)).substr(0, 32) + "\"";
  o.info.last_modified = std::chrono::system_clock::now();
  o.data = std::make_shared<const std::string>(std::move(data));
  std::string etag = o.info.etag;
  objects_[key] = std::move(o);
  return etag;
}

void memory_client::remove(const std::string& key) {
  std::lock_guard lock(mu_);
  objects_.erase(key);
}

awaitable<result<object_info>> memory_client::head(std::string key) {
  heads.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  auto it = objects_.find(key);
  if (it == objects_.end()) co_return make_error_code(errc::not_found);
  co_return it->second.info;
}

awaitable<result<std::size_t>> memory_client::get(std::string key, std::uint64_t offset,
                                                  std::span<char> dest, std::string if_match) {
  gets.fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<const std::string> data;
  {
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) co_return make_error_code(errc::not_found);
    if (!if_match.empty() && if_match != it->second.info.etag)
      co_return make_error_code(errc::precondition_failed);
    data = it->second.data;
  }
  if (offset >= data->size()) co_return make_error_code(errc::invalid_range);
  std::size_t n = std::min<std::uint64_t>(dest.size(), data->size() - offset);
  std::memcpy(dest.data(), data->data() + offset, n);
  bytes.fetch_add(n, std::memory_order_relaxed);
  co_return n;
}

awaitable<result<std::string>> memory_client::put_object(std::string key, std::string body,
                                                         bool if_none_match) {
  puts.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  if (if_none_match && objects_.count(key)) {
    put_conflicts.fetch_add(1, std::memory_order_relaxed);
    co_return make_error_code(errc::precondition_failed);
  }
  co_return store(key, std::move(body));
}

awaitable<result<list_page>> memory_client::list(list_request request) {
  lists.fetch_add(1, std::memory_order_relaxed);
  std::map<std::string, object_info> infos;
  {
    std::lock_guard lock(mu_);
    for (auto& [k, o] : objects_) infos.emplace(k, o.info);
  }
  co_return paginate(infos, request);
}

}  // namespace valkyrie::s3
