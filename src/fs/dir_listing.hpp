#pragma once
// Compact metadata for the namespace: an ETag in 24 bytes and a directory listing in one arena.
//
// compact_etag: S3 ETags are almost always "<32 lowercase hex digits>" (MD5) or
// "<32 hex>-<parts>" (multipart): those are kept as 16 binary bytes and a part count; any other
// form falls back to a heap copy. str() gives back exactly the text the server sent.
// dir_listing: an immutable, sorted directory listing: all names in one string, one 48-byte
// record per entry, looked up by binary search. Shared (shared_ptr<const>) between the inode
// table and readers, so a readdir never copies it.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace valkyrie::fs {

class compact_etag {
 public:
  compact_etag() = default;
  explicit compact_etag(std::string_view text) { assign(text); }
  compact_etag(const compact_etag& o) { copy_from(o); }
  compact_etag(compact_etag&& o) noexcept { steal(o); }
  compact_etag& operator=(const compact_etag& o) {
    if (this != &o) reset(), copy_from(o);
    return *this;
  }
  compact_etag& operator=(compact_etag&& o) noexcept {
    if (this != &o) reset(), steal(o);
    return *this;
  }
  ~compact_etag() { reset(); }

  void assign(std::string_view text);
  void clear() { reset(); }
  bool empty() const { return kind_ == kind::empty; }
  std::string str() const;
  // A 64-bit digest of the ETag (0 only when empty): remembers a version in 8 bytes.
  std::uint64_t fingerprint() const;
  bool operator==(const compact_etag& o) const;

 private:
  enum class kind : std::uint8_t { empty, md5, multipart, other };
  void reset();
  void copy_from(const compact_etag& o);
  void steal(compact_etag& o) noexcept;
  union {
    unsigned char digest_[16];
    std::string* other_;  // kind::other
  };
  std::uint32_t parts_ = 0;
  kind kind_ = kind::empty;
};
static_assert(sizeof(compact_etag) == 24);

class dir_listing {
 public:
  struct entry {
    std::uint32_t name_at = 0;
    std::uint8_t name_len = 0;  // names are at most 255 bytes
    bool directory = false;
    std::uint64_t size = 0;
    std::chrono::system_clock::time_point mtime{};
    compact_etag etag;
  };
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::size_t size() const { return entries_.size(); }
  const entry& at(std::size_t i) const { return entries_[i]; }
  std::string_view name(std::size_t i) const { return {names_.data() + entries_[i].name_at, entries_[i].name_len}; }
  std::size_t find(std::string_view name) const;
  std::size_t memory_bytes() const { return names_.capacity() + entries_.capacity() * sizeof(entry); }

  // Collects entries in any order (names must be valid, <= 255 bytes); finish() sorts them,
  // drops repeats and, where a name is both a file and a directory, keeps the directory
  // (reporting the clash once).
  class builder {
   public:
    void add(std::string_view name, bool directory, std::uint64_t size, std::chrono::system_clock::time_point mtime,
             std::string_view etag);
    std::shared_ptr<const dir_listing> finish(const std::function<void(std::string_view name)>& on_clash);

   private:
    std::string names_;
    std::vector<entry> entries_;
  };

 private:
  std::string names_;
  std::vector<entry> entries_;
};

}  // namespace valkyrie::fs
