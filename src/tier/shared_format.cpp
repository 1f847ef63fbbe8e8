#include "tier/shared_format.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <memory>

#include "s3/sigv4.hpp"
#include "tier/crc32c.hpp"

namespace valkyrie::tier {

namespace {
constexpr char object_magic[4] = {'V', 'K', 'S', 'C'};
constexpr std::uint16_t format_version = 1;
constexpr std::uint16_t flag_mac = 1;
constexpr std::size_t fixed_size = 4 + 2 + 2 + 4 + 8 + 4 + 4 + 8 + 8 + 4 * 2;  // 52
constexpr std::size_t crc_at = 20, flags_at = 6;

template <class T>
void put_le(std::string& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
template <class T>
T get_le(const char* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

bool plain_key(std::string_view k) {
  if (k.empty() || k.size() > 512 || k.front() == '/' || k.back() == '/') return false;
  std::size_t seg = 0;
  for (std::size_t i = 0; i <= k.size(); ++i) {
    if (i == k.size() || k[i] == '/') {
      std::string_view s = k.substr(seg, i - seg);
      if (s.empty() || s == "." || s == "..") return false;
      seg = i + 1;
      continue;
    }
    char c = k[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  }
  return true;
}

std::string etag_part(std::string_view etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"')
    etag = etag.substr(1, etag.size() - 2);
  bool plain = !etag.empty() && etag.size() <= 64;
  for (char c : etag)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
      plain = false;
  if (plain && etag.rfind("h-", 0) != 0) return std::string(etag);
  return "h-" + s3::sha256_hex(etag).substr(0, 32);
}

std::string identity_header(std::string_view origin, const cache::chunk_id& id, std::uint16_t flags,
                            std::uint64_t data_len, std::uint32_t crc) {
  const auto& o = *id.object;
  std::string h;
  h.reserve(fixed_size + origin.size() + o.bucket.size() + o.key.size() + o.etag.size() +
            shared_mac_size);
  h.append(object_magic, 4);
  put_le<std::uint16_t>(h, format_version);
  put_le<std::uint16_t>(h, flags);
  put_le<std::uint32_t>(h, static_cast<std::uint32_t>(shared_header_size(origin, id)));
  put_le<std::uint64_t>(h, data_len);
  put_le<std::uint32_t>(h, crc);
  put_le<std::uint32_t>(h, id.chunk_size);
  put_le<std::uint64_t>(h, id.index);
  put_le<std::uint64_t>(h, o.size);
  for (std::string_view s :
       {origin, std::string_view(o.bucket), std::string_view(o.key), std::string_view(o.etag)})
    put_le<std::uint16_t>(h, static_cast<std::uint16_t>(s.size()));
  for (std::string_view s :
       {origin, std::string_view(o.bucket), std::string_view(o.key), std::string_view(o.etag)})
    h.append(s);
  return h;
}

// HMAC-SHA256 over `head` then the data pieces.
std::string mac_of(std::string_view key, std::string_view head,
                   const std::vector<std::span<const char>>& data) {
  std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr),
                                                        EVP_MAC_free);
  std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> ctx(
      mac ? EVP_MAC_CTX_new(mac.get()) : nullptr, EVP_MAC_CTX_free);
  if (!ctx) return {};
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (!EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                    params))
    return {};
  EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(head.data()), head.size());
  for (auto& d : data)
    EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(d.data()), d.size());
  unsigned char out[EVP_MAX_MD_SIZE];
  std::size_t n = 0;
  if (!EVP_MAC_final(ctx.get(), out, &n, sizeof out) || n != shared_mac_size) return {};
  return std::string(reinterpret_cast<char*>(out), n);
}

std::uint32_t crc_of(const std::vector<std::span<const char>>& data) {
  std::uint32_t crc = crc32c_seed;
  for (auto& d : data) crc = crc32c(d, crc);
  return crc;
}
}  // namespace

std::string shared_chunk_key(std::string_view prefix, std::string_view origin,
                             const cache::chunk_id& id) {
  const auto& o = *id.object;
  std::string k(prefix);
  k += "v1/";
  k += s3::sha256_hex(std::string(origin) + "\n" + o.bucket).substr(0, 16);
  k += plain_key(o.key) ? "/k/" + o.key : "/h/" + s3::sha256_hex(o.key);
  k += "/" + etag_part(o.etag);
  k += "/" + std::to_string(id.chunk_size) + "/" + std::to_string(id.index);
  return k;
}

std::size_t shared_header_size(std::string_view origin, const cache::chunk_id& id) {
  const auto& o = *id.object;
  return fixed_size + origin.size() + o.bucket.size() + o.key.size() + o.etag.size() +
         shared_mac_size;
}

std::string shared_header(std::string_view origin, const cache::chunk_id& id,
                          const std::vector<std::span<const char>>& data,
                          std::string_view mac_key) {
  std::uint64_t len = 0;
  for (auto& d : data) len += d.size();
  std::string h = identity_header(origin, id, mac_key.empty() ? 0 : flag_mac, len, crc_of(data));
  if (mac_key.empty())
    h.append(shared_mac_size, '\0');
  else
    h += mac_of(mac_key, h, data);
  return h;
}

const char* to_string(shared_check c) {
  switch (c) {
    case shared_check::ok:
      return "ok";
    case shared_check::bad_header:
      return "bad header";
    case shared_check::wrong_identity:
      return "wrong identity";
    case shared_check::bad_length:
      return "bad length";
    case shared_check::bad_crc:
      return "bad CRC32C";
    case shared_check::bad_mac:
      return "bad HMAC";
  }
  return "?";
}

shared_check check_shared_chunk(std::span<const char> header, std::string_view origin,
                                const cache::chunk_id& id,
                                const std::vector<std::span<const char>>& data,
                                std::string_view mac_key) {
  const std::size_t size = shared_header_size(origin, id);
  if (header.size() < fixed_size || std::memcmp(header.data(), object_magic, 4) != 0 ||
      get_le<std::uint16_t>(header.data() + 4) != format_version)
    return shared_check::bad_header;
  if (header.size() != size || get_le<std::uint32_t>(header.data() + 8) != size)
    return shared_check::wrong_identity;
  std::uint64_t len = 0;
  for (auto& d : data) len += d.size();
  const std::uint16_t flags = get_le<std::uint16_t>(header.data() + flags_at);
  const std::uint32_t crc = get_le<std::uint32_t>(header.data() + crc_at);
  // Every identity field, byte for byte, against what this reader wants.
  const std::string want = identity_header(origin, id, flags, len, crc);
  const std::size_t body = size - shared_mac_size;
  if (std::memcmp(header.data(), want.data(), 12) != 0) return shared_check::bad_header;
  if (get_le<std::uint64_t>(header.data() + 12) != id.length() || len != id.length())
    return shared_check::bad_length;
  if (std::memcmp(header.data() + 24, want.data() + 24, body - 24) != 0)
    return shared_check::wrong_identity;
  if (crc_of(data) != crc) return shared_check::bad_crc;
  if (!mac_key.empty()) {
    if (!(flags & flag_mac)) return shared_check::bad_mac;
    std::string mac = mac_of(mac_key, std::string_view(header.data(), body), data);
    if (mac.size() != shared_mac_size ||
        CRYPTO_memcmp(mac.data(), header.data() + body, shared_mac_size) != 0)
      return shared_check::bad_mac;
  }
  return shared_check::ok;
}

}  // namespace valkyrie::tier
