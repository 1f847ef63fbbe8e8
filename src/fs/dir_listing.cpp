#include "fs/dir_listing.hpp"

#include <algorithm>
#include <cstring>

namespace valkyrie::fs {
namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case would not round-trip: such ETags take the fallback
}
// 32 lower-case hex digits into 16 bytes.
bool parse_hex(std::string_view hex, unsigned char* out) {
  if (hex.size() != 32) return false;
  for (int i = 0; i < 16; ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}
}  // namespace

void compact_etag::assign(std::string_view text) {
  reset();
  if (text.empty()) return;
  if (text.size() >= 34 && text.front() == '"' && text.back() == '"') {
    std::string_view inner = text.substr(1, text.size() - 2);
    unsigned char digest[16];
    if (parse_hex(inner.substr(0, 32), digest)) {
      if (inner.size() == 32) {
        std::memcpy(digest_, digest, 16);
        kind_ = kind::md5;
        return;
      }
      // "-<parts>": decimal without leading zeros, fitting 32 bits.
      std::string_view parts = inner.substr(32);
      if (parts.size() >= 2 && parts.size() <= 10 && parts[0] == '-' && parts[1] != '0') {
        std::uint64_t n = 0;
        bool ok = true;
        for (char c : parts.substr(1)) ok = ok && c >= '0' && c <= '9', n = n * 10 + (c - '0');
        if (ok && n <= 0xffffffffu) {
          std::memcpy(digest_, digest, 16);
          parts_ = static_cast<std::uint32_t>(n);
          kind_ = kind::multipart;
          return;
        }
      }
    }
  }
  other_ = new std::string(text);
  kind_ = kind::other;
}

std::string compact_etag::str() const {
  static const char* digits = "0123456789abcdef";
  switch (kind_) {
    case kind::empty:
      return {};
    case kind::other:
      return *other_;
    default:
      break;
  }
  std::string out = "\"";
  for (unsigned char b : digest_) out += digits[b >> 4], out += digits[b & 15];
  if (kind_ == kind::multipart) out += "-" + std::to_string(parts_);
  return out + "\"";
}

std::uint64_t compact_etag::fingerprint() const {
  if (kind_ == kind::empty) return 0;
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the text
  for (char c : str()) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h ? h : 1;
}

bool compact_etag::operator==(const compact_etag& o) const {
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case kind::empty:
      return true;
    case kind::other:
      return *other_ == *o.other_;
    default:
      return parts_ == o.parts_ && std::memcmp(digest_, o.digest_, 16) == 0;
  }
}

void compact_etag::reset() {
  if (kind_ == kind::other) delete other_;
  kind_ = kind::empty;
  parts_ = 0;
}

void compact_etag::copy_from(const compact_etag& o) {
  kind_ = o.kind_;
  parts_ = o.parts_;
  if (kind_ == kind::other)
    other_ = new std::string(*o.other_);
  else
    std::memcpy(digest_, o.digest_, 16);
}

void compact_etag::steal(compact_etag& o) noexcept {
  kind_ = o.kind_;
  parts_ = o.parts_;
  std::memcpy(digest_, o.digest_, 16);  // the pointer too, for kind::other
  o.kind_ = kind::empty;
  o.parts_ = 0;
}

std::size_t dir_listing::find(std::string_view name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name, [this](const entry& e, std::string_view n) {
    return std::string_view(names_.data() + e.name_at, e.name_len) < n;
  });
  if (it == entries_.end() || std::string_view(names_.data() + it->name_at, it->name_len) != name) return npos;
  return static_cast<std::size_t>(it - entries_.begin());
}

void dir_listing::builder::add(std::string_view name, bool directory, std::uint64_t size,
                               std::chrono::system_clock::time_point mtime, std::string_view etag) {
  entry e;
  e.name_at = static_cast<std::uint32_t>(names_.size());
  e.name_len = static_cast<std::uint8_t>(name.size());
  e.directory = directory;
  e.size = directory ? 0 : size;
  e.mtime = mtime;
  if (!directory) e.etag.assign(etag);
  names_.append(name);
  entries_.push_back(std::move(e));
}

std::shared_ptr<const dir_listing> dir_listing::builder::finish(
    const std::function<void(std::string_view name)>& on_clash) {
  auto name_of = [this](const entry& e) { return std::string_view(names_.data() + e.name_at, e.name_len); };
  // By name, directories first among equals: the first of a run is the one kept.
  std::sort(entries_.begin(), entries_.end(), [&](const entry& a, const entry& b) {
    int c = name_of(a).compare(name_of(b));
    return c != 0 ? c < 0 : a.directory > b.directory;
  });
  auto out = std::make_shared<dir_listing>();
  std::size_t kept = 0, bytes = 0;
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (i == 0 || name_of(entries_[i]) != name_of(entries_[i - 1])) ++kept, bytes += entries_[i].name_len;
  out->names_.reserve(bytes);
  out->entries_.reserve(kept);
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    std::string_view name = name_of(entries_[i]);
    if (i > 0 && name == name_of(entries_[i - 1])) {
      if (entries_[i].directory != entries_[i - 1].directory && on_clash) on_clash(name);
      continue;
    }
    entry e = std::move(entries_[i]);
    e.name_at = static_cast<std::uint32_t>(out->names_.size());
    out->names_.append(name);
    out->entries_.push_back(std::move(e));
  }
  names_.clear();
  names_.shrink_to_fit();
  entries_.clear();
  entries_.shrink_to_fit();
  return out;
}

}  // namespace valkyrie::fs
