#pragma once
// The disk tier's index on disk: an append-only journal of slot records, each framed with its
// length and a CRC32C, replayed at start in one sequential read (no data is read).
//
// Records: insert (slot and offset in it -> chunk identity, data length, data CRC, write
// sequence, whether the slot is packed with small chunks), remove (the slot is free, with every
// chunk in it) and remove_member (one chunk of a packed slot is gone). An insert is appended
// only after the chunk's data and header writes have completed; a remove before a slot is
// overwritten. Format 2 (magic VKYJRN02) added the offset and the packed flag: a journal of
// format 1 is not replayed (the store's meta file names the format; an old directory starts
// empty). Replay applies records in order and stops
// at the first record that is torn or fails its CRC (a kill -9 or power loss in mid-append):
// the tail from there is cut off, so later appends follow good records. A checkpoint rewrites
// the journal as one insert per live slot (to a temporary file, made durable, renamed over it).
// While the store runs, a checkpoint does not hold its reactor on the disk: begin_rewrite()
// (under the store's lock) starts copying every later append aside, write_rewrite() (a
// coroutine, no lock) writes the temporary file with O_SYNC through the reactor's io_uring (an
// fsync would block the reactor: about 80 ms for 100,000 chunks here), and finish_rewrite()
// (under the lock again) appends the copied records to it and renames it over the journal, so
// the new journal holds every record the old one did. rewrite() does all of it at once
// (start-up and shutdown).
// The same insert encoding is the slot header on the data file (slot_header), so a slot names
// what it holds independently of the journal.
// Threading: one journal per store, called with the store's journal mutex held.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

#include "cache/chunk_id.hpp"
#include "core/asio.hpp"

namespace valkyrie::tier {

// What a slot holds.
struct slot_record {
  cache::chunk_id id;
  std::uint32_t length = 0;  // data bytes (id.length())
  std::uint32_t crc = 0;     // CRC32C of those bytes
  std::uint64_t seq = 0;     // write sequence: a rewritten slot gets a new one
};

enum class record_type : std::uint8_t { insert = 1, remove = 2, remove_member = 3 };

struct journal_record {
  record_type type = record_type::insert;
  std::uint32_t slot = 0;
  std::uint32_t offset = 0;  // insert and remove_member: the chunk's header's offset in the slot
  bool packed = false;       // insert: the slot holds several small chunks (disk_pack.cpp)
  slot_record rec;           // insert only
};

// Appends one framed record (u32 payload length, u32 CRC32C of the payload, payload).
void encode_insert(std::string& out, std::uint32_t slot, std::uint32_t offset, bool packed,
                   const slot_record& r);
void encode_remove(std::string& out, std::uint32_t slot);
void encode_remove_member(std::string& out, std::uint32_t slot, std::uint32_t offset);
// One framed record from the front of `in`: the bytes it took, or 0 if it is torn or corrupt.
std::size_t decode_record(std::string_view in, journal_record& out);

struct replay_stats {
  std::uint64_t records = 0;     // good records applied
  std::uint64_t torn_bytes = 0;  // cut off the tail
  double seconds = 0;
};

class journal {
 public:
  journal() = default;
  journal(journal&& o) noexcept;
  journal& operator=(journal&& o) noexcept;
  ~journal();

  // Opens (creating) `path` and replays it through `apply`. Start-up only: throws
  // std::system_error with the path when the file cannot be read or written.
  static journal open(const std::string& path,
                      const std::function<void(const journal_record&)>& apply, replay_stats& stats);
  // Appends framed records (page cache; survives kill -9, not power loss until sync()).
  std::error_code append(std::string_view framed);
  std::error_code sync();
  // Replaces the whole journal with `framed` (a checkpoint), at once (start-up, shutdown).
  std::error_code rewrite(std::string_view framed);
  // The same in three steps (see the top): appends from begin_rewrite() on are kept aside too;
  // write_rewrite() may run on any reactor while others append; finish_rewrite() after it
  // succeeded, abort_rewrite() after it failed. One at a time.
  void begin_rewrite();
  bool rewriting() const { return rewriting_; }
  awaitable<std::error_code> write_rewrite(std::string framed) const;
  std::error_code finish_rewrite();
  void abort_rewrite();
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t appended_records() const { return appended_; }  // since open or the last rewrite

 private:
  std::string checkpoint_path() const { return path_ + ".checkpoint"; }  // (write_rewrite's)
  std::string path_;
  int fd_ = -1;
  std::uint64_t bytes_ = 0;
  std::uint64_t appended_ = 0;
  bool rewriting_ = false;
  std::string tail_;  // appended since begin_rewrite()
  std::uint64_t tail_records_ = 0;
};

}  // namespace valkyrie::tier
