#pragma once
// The handles this session gave the kernel as `fh` (open files, open directories, the order
// file). Each is a heap object whose address is the fh, so a read finds its file with no lookup;
// the table only remembers which exist, so that the ones the kernel never released (the
// connection aborted at unmount with files open) are freed when the session ends.
//
// Threading: open and release of one handle may come on different reactors. The table is cut
// into shards by address, each with its own mutex: no lock is shared by all opens, and reads
// take none.
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

namespace valkyrie::fuse {

class handle_table {
 public:
  handle_table() = default;
  handle_table(const handle_table&) = delete;
  handle_table& operator=(const handle_table&) = delete;
  ~handle_table() {
    for (auto& s : shards_)
      for (auto& [p, destroy] : s.live) destroy(p);
  }

  // Takes ownership of `h`; returns its fh.
  template <class T>
  std::uint64_t adopt(T* h) {
    auto& s = shard_of(h);
    std::lock_guard lock(s.mu);
    s.live.emplace(h, [](void* p) { delete static_cast<T*>(p); });
    return reinterpret_cast<std::uint64_t>(h);
  }

  // The handle behind an fh this table gave out (no lock: the kernel sends no request on an fh
  // after its release).
  template <class T>
  static T* get(std::uint64_t fh) {
    return reinterpret_cast<T*>(fh);
  }

  // Deletes the handle (at release, or when the open it was made for was interrupted).
  template <class T>
  void release(std::uint64_t fh) {
    T* h = get<T>(fh);
    {
      auto& s = shard_of(h);
      std::lock_guard lock(s.mu);
      s.live.erase(h);
    }
    delete h;
  }

  std::size_t size() {
    std::size_t n = 0;
    for (auto& s : shards_) {
      std::lock_guard lock(s.mu);
      n += s.live.size();
    }
    return n;
  }

 private:
  struct shard {
    std::mutex mu;
    std::unordered_map<void*, void (*)(void*)> live;
  };
  shard& shard_of(const void* p) {
    return shards_[std::hash<const void*>{}(p) / 64 % shards_.size()];
  }

  std::array<shard, 16> shards_;
};

}  // namespace valkyrie::fuse
