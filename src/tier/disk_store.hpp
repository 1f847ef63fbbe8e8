#pragma once
// tier: the persistent local disk tier under the memory cache (memory -> disk -> S3).
//
// disk_store owns DIR (--disk-cache): `files` preallocated data files (data.0 ...) cut into
// fixed slots, the journal (the index), `meta` (the geometry and format) and `lock` (flock: one
// daemon per directory). A slot is chunk_size bytes of data behind a 4 KiB header (the chunk's
// identity, length, CRC32C and write sequence: the journal's insert record); only chunks of the
// store's chunk size are admitted (a random reader's small blocks are not).
// A chunk of more than a quarter of the chunk size (pack_limit) takes a whole slot. A smaller one
// (a small object's only chunk: a 110 KiB JPEG) is packed (disk_pack.cpp): the store keeps one
// open packed slot and appends each small chunk to it at the next 4 KiB-aligned offset, as its
// own 4 KiB header (the same encoding, with its offset) and its data; a chunk that does not fit
// closes the slot and opens a fresh one, taken like any slot (CLOCK or Belady evicts a victim).
// The index maps a chunk to (slot, offset) and each slot lists its members. Evicting a packed
// slot drops every member (one journaled remove of the slot); a member that fails its check or
// cannot be read is dropped alone (journaled as remove_member), and a closed packed slot left
// without members is freed. A hit on any member sets its slot's reference bit; with an order a
// packed slot ranks as its member needed soonest (it goes only when all of them can). The open
// slot is never a victim. Waste: at most a packed slot's tail, 4 KiB of header and the last
// page's padding per small chunk (a 110 KiB chunk takes 116 KiB: an 8 MiB slot holds 70 of
// them, 94% of what its bytes would hold; a 2 TB tier ~17 M rather than 250,000).
// used_bytes (and valkyrie_disk_used_bytes) count the data bytes of the chunks held, packed or
// not; used_slots counts slots in use; chunks and packed_chunks count members.
// Format: meta's first line names format 2 (packed slots, the offset in the journal's records);
// a directory of another format or geometry is started empty (logged once), never misread.
// The cap is exact: slots = size / (4 KiB + chunk size), and the data files hold exactly the
// slots; the journal is outside it (kept to about twice its live records by checkpoints).
// Reads and writes are O_DIRECT between the caller's page-aligned memory and the disk
// (block_file), on the calling reactor.
// Integrity: an insert is journaled only after its data and header writes completed; a read
// checks the header against the journal's record and the data's CRC32C, and any mismatch is
// a miss that drops the chunk (its slot, or that member of a packed slot; counted). A slot is
// journaled as removed before it is reused.
// So a torn write (kill -9, power loss) and a slot rewritten under a stale journal are never
// served, and a new ETag is a different identity that never finds old bytes.
// Eviction without a training order: CLOCK over the slots (a hit sets the slot's reference bit;
// the hand clears bits and takes the first slot without one that nobody is reading).
// With one (set_ranker: the memory cache's next-use rank), placement is Belady
// (disk_placement.cpp): a full store evicts the slot whose next use is farthest, and a chunk
// needed later than every chunk the store holds is not written at all (declined, counted).
// Faults: an I/O error (EIO, ENOSPC, a short read; a journal append or checkpoint that fails,
// as on a full filesystem) is a miss or a dropped write, counted and logged (rate-limited).
// A slow disk: each chunk's read (header and data) and write is timed, and one that took longer
// than slow_after per 8 MiB of what it queued behind (the bytes in flight when it began, its own
// included: thousands of 64 KiB write-backs in flight take seconds each on a healthy disk that
// moves hundreds of MB/s) counts as slow (valkyrie_disk_slow_total, logged rate-limited); its
// data is still served or stored, it completed correctly. A slow operation
// and an error both count towards the same streak: after max_consecutive_errors of them in a
// row (an operation on time and without error ends the streak) the store steps aside (every
// read a miss without touching the disk, every write dropped), logged once, for retry_after,
// then tries again. It never fails a read: callers fall back to S3.
// A read in flight is not raced against S3: the disk writes straight into the cache's memory
// (O_DIRECT), which cannot be handed to a second fetch while the first may still land in it, so
// a slow read's reader waits for it; the readers after the step-aside go to S3.
// A disk that stops answering (a hung device, a network volume cut off) is found without
// waiting for its operations to complete: the store tracks the reads and writes in flight,
// and when none of them has completed for hung_after it steps aside at once
// (valkyrie_disk_hung_total, logged), so that new readers go to S3 instead of queueing behind
// it. Only the readers already waiting on the disk wait for it (the kernel's own timeout, 30 s
// for NVMe, ends their request with an error: a miss, then S3).
// Threading: read/write from any reactor; one mutex guards the slot table, the index and the
// journal, never held across I/O. The journal's appends are buffered writes under it; its
// checkpoints while running are written off it, through the reactor's io_uring (journal.hpp).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cache/chunk_cache.hpp"
#include "cache/chunk_id.hpp"
#include "tier/block_file.hpp"
#include "tier/journal.hpp"

namespace valkyrie::tier {

struct store_options {
  std::string dir;
  std::uint64_t size = 0;                 // the cap on the data files' bytes
  std::uint32_t chunk_size = 8 << 20;     // slot data bytes (the cache's chunk size)
  unsigned files = 4;                     // data files (fewer if there are fewer slots)
  file_opener opener = open_direct_file;  // tests inject faults here
  unsigned max_consecutive_errors = 5;    // errors or slow operations in a row: step aside
  std::chrono::steady_clock::duration retry_after = std::chrono::seconds(30);
  // A chunk read or write slower than this per 8 MiB in flight when it began (its own bytes
  // and those queued before it) is slow. 2 s: a healthy NVMe moves 8 MiB in ~3 ms, a SATA SSD in
  // ~20 ms, even a hard disk in ~100 ms (queued behind a burst of concurrent reads, a few hundred
  // ms), while S3 brings a chunk in ~0.1-0.5 s. A disk at 4 MB/s (a failing drive retrying sectors,
  // a network volume out of burst credits) is slower than going to S3, and the threshold leaves a
  // healthy disk under load far below it.
  std::chrono::steady_clock::duration slow_after = std::chrono::seconds(2);
  // Operations in flight and none completed for this long (per 8 MiB of chunk) means the disk
  // has stopped answering: the store steps aside while it is. Twice slow_after: a disk that
  // completes nothing for that long moves less than 2 MB/s, far slower than S3.
  std::chrono::steady_clock::duration hung_after = std::chrono::seconds(4);
};

struct store_stats {
  std::uint64_t hits = 0, misses = 0, bytes_read = 0, bytes_written = 0, writes = 0,
                writes_dropped = 0, check_failures = 0, errors = 0;
  std::uint64_t slow = 0;             // reads and writes slower than slow_after (completed)
  std::uint64_t writes_declined = 0;  // needed later than all the store holds (with an order)
  std::uint64_t checkpoints = 0;      // the journal rewritten while running (background; done)
  std::uint64_t hung =
      0;  // times it stepped aside: operations in flight, none completed for hung_after
  std::uint32_t slots = 0, used_slots = 0;
  std::uint32_t packed_slots = 0;  // of used_slots: slots of small chunks (open one included)
  std::uint64_t chunks = 0;        // chunks held (whole or packed)
  std::uint64_t packed_chunks = 0;
  std::uint64_t used_bytes = 0;  // data bytes of the chunks held
  replay_stats replay;
  bool disabled = false;
  bool direct = false;  // O_DIRECT on the data files
};

class disk_store {
 public:
  static constexpr std::uint32_t header_bytes = 4096;
  // Locks and opens DIR (creating the files), replays the journal. Start-up only: throws
  // std::runtime_error with a message for the user (directory in use by another daemon,
  // cannot preallocate, ...). A directory written with another geometry starts empty.
  static std::shared_ptr<disk_store> open(store_options opts);
  // Writes a checkpoint (the journal as one record per live slot) and releases the lock.
  ~disk_store();
  disk_store(const disk_store&) = delete;
  disk_store& operator=(const disk_store&) = delete;

  // Whether the chunk may be stored here at all (its chunk size, its identity fits a header).
  bool admits(const cache::chunk_id& id) const;
  bool contains(const cache::chunk_id& id) const;
  // The chunk could be stored now without displacing another (a free slot, or room in the open
  // packed slot for a small one), with `spare` bytes of free slots left beside it.
  bool has_room_for(const cache::chunk_id& id, std::uint64_t spare) const;
  // Reads the chunk into `dest` (id.length() bytes in page-aligned pieces, whole 4 KiB pages
  // behind them: the tail of the last page may be overwritten) and checks it. The length on a
  // hit; nullopt on a miss of any kind (absent, check failure, I/O error, disabled).
  awaitable<std::optional<std::size_t>> read(cache::chunk_id id, cache::chunk_buffers dest);
  // Stores the chunk's bytes (`data`: id.length() bytes, pieces as for read; the tail of the
  // last page is written too). True when it was stored; false when it was there already or was
  // dropped (counted: no slot free of readers, I/O error, disabled).
  awaitable<bool> write(cache::chunk_id id, std::vector<std::span<const char>> data);
  // Counts a write the caller gave up before calling write() (its write-back was full).
  void count_dropped();
  // The training order's next-use rank (chunk_cache::rank_fn: larger is later; not_in_order
  // last), or nullptr: back to CLOCK. Any thread, any time; each write uses the current one.
  using rank_fn = cache::chunk_cache::rank_fn;
  void set_ranker(rank_fn ranker);
  // Whether a ranker is set (a training order is known).
  bool ranked() const { return ranker_.load() != nullptr; }
  // Rewrites the journal as one insert per live slot.
  std::error_code checkpoint();

  store_stats stats() const;
  // With reads or writes in flight: how long since one last completed (or since the first began
  // on an idle disk); zero when none is in flight. Past hung_after the store steps aside.
  std::chrono::steady_clock::duration stalled_for() const;
  std::uint32_t slots() const { return static_cast<std::uint32_t>(slots_.size()); }
  std::uint64_t slot_stride() const { return stride_; }
  std::uint32_t chunk_size() const { return opts_.chunk_size; }
  // Chunks of at most this many bytes are packed (a quarter of the chunk size).
  std::uint32_t pack_limit() const { return opts_.chunk_size / 4; }
  // The disk bytes a chunk takes: a slot, or its header and pages in a packed slot.
  std::uint64_t footprint(const cache::chunk_id& id) const;
  // Bytes of the data files (slots x stride).
  std::uint64_t capacity() const { return slots_.size() * stride_; }

 private:
  // One chunk in a slot: at offset 0 alone, or one of a packed slot's members.
  struct member {
    std::uint32_t offset = 0;
    slot_record rec;
  };
  struct location {
    std::uint32_t slot = 0, offset = 0;
  };
  struct slot_state {
    enum class state : std::uint8_t { free, used, writing, dropped } st = state::free;
    bool ref = false;
    bool packed = false;
    unsigned readers = 0;
    unsigned writers = 0;    // packed: member writes in flight
    std::uint32_t fill = 0;  // packed: bytes taken (the next member's offset)
    std::uint64_t gen = 0;   // changes when the slot is taken again (placement's check)
    std::vector<member> members;
  };
  explicit disk_store(store_options opts);
  void open_files();
  void replay(const journal_record& r);
  // With mu_ held.
  bool usable_locked();
  std::optional<std::uint32_t> take_slot_locked();
  // Belady (disk_placement.cpp): a free slot, else the slot read farthest in the future if that
  // is later than `incoming`; nullopt: decline the write.
  std::optional<std::uint32_t> take_slot_ranked_locked(const rank_fn& rank, std::uint64_t incoming);
  // A slot just stored under `rank`: a candidate victim if it is among the farthest.
  void note_ranked_locked(std::uint32_t slot, std::uint64_t rank);
  void scan_victims_locked(const rank_fn& rank);
  void drop_locked(std::uint32_t slot);
  // disk_pack.cpp: small chunks in packed slots.
  bool packs(std::uint64_t length) const { return length <= pack_limit(); }
  // Reserves room for a small chunk in the open packed slot (opening one, which may evict or,
  // with an order, decline); nullopt: not stored (counted).
  std::optional<location> reserve_packed_locked(const rank_fn* rank, std::uint64_t incoming,
                                                std::uint64_t length);
  void close_open_locked(const rank_fn* rank);
  void drop_member_locked(std::uint32_t slot, std::uint32_t offset);
  // A packed slot no longer open nor written, without members: freed.
  void free_if_empty_locked(std::uint32_t slot);
  const member* find_member(const slot_state& s, std::uint32_t offset) const;
  std::uint64_t slot_rank(const rank_fn& rank, const slot_state& s) const;
  void encode_slot(std::string& out, std::uint32_t slot) const;
  // A checkpoint's records: encode_slot of every slot (mu_ held).
  std::string encode_live_locked() const;
  void finish_replay();
  void release_reader_locked(std::uint32_t slot);
  void note_error_locked(std::error_code ec, const char* what);
  // A data read or write that completed (ec: its error) after `took`: counts an error or a slow
  // operation towards the streak that steps the store aside, or ends the streak.
  // `queued`: the bytes in flight when it was submitted, its own included (slow_limit).
  void note_io_locked(std::error_code ec, std::chrono::steady_clock::duration took,
                      std::uint64_t queued, const char* what);
  std::chrono::steady_clock::duration slow_limit(std::uint64_t queued) const;
  void count_fault_locked();
  // A read or write of `bytes` begins (returns the bytes then in flight, its own included: what
  // it queues behind) or completes.
  std::uint64_t begin_io_locked(std::uint64_t bytes);
  void end_io_locked(std::uint64_t bytes);
  // Operations in flight and none completed for hung_limit_: steps aside (once per episode).
  bool hung_locked(std::chrono::steady_clock::time_point now);
  std::pair<block_file*, std::uint64_t> where(std::uint32_t slot) const;

  store_options opts_;
  std::uint64_t stride_ = 0;
  std::uint32_t per_file_ = 0;
  int lock_fd_ = -1;
  std::vector<std::shared_ptr<block_file>> files_;

  mutable std::mutex mu_;
  std::vector<slot_state> slots_;
  std::unordered_map<cache::chunk_id, location, cache::chunk_id_hash> index_;
  std::optional<std::uint32_t> open_;  // the packed slot small chunks are appended to
  std::unordered_set<cache::chunk_id, cache::chunk_id_hash> writing_;
  std::vector<std::uint32_t> free_;
  std::uint32_t hand_ = 0;
  std::uint64_t seq_ = 0;
  journal journal_;
  store_stats stats_;
  // Placement by the order: the ranker, and the farthest slots found by the last scan (a
  // min-heap of (rank, slot, write seq) at most victim_batch long); every used slot not in it
  // was ranked no farther than its smallest when scanned. Rescanned when it empties, every
  // victim_batch evictions, and when the ranker changes.
  struct victim {
    std::uint64_t rank;
    std::uint32_t slot;
    std::uint64_t seq;
    bool operator>(const victim& o) const { return rank > o.rank; }
  };
  static constexpr std::size_t victim_batch = 64;
  std::atomic<std::shared_ptr<const rank_fn>> ranker_;
  std::shared_ptr<const rank_fn> victims_for_;  // the ranker victims_ was scanned with
  std::vector<victim> victims_;
  unsigned evictions_since_scan_ = 0;
  std::vector<std::uint32_t> touched_;                // slots read since the scan (with a ranker)
  bool touched_overflow_ = false;                     // too many to keep: scan again
  unsigned consecutive_errors_ = 0;                   // errors and slow operations in a row
  std::chrono::steady_clock::duration hung_limit_{};  // hung_after for this chunk size
  std::uint64_t in_flight_ops_ = 0, in_flight_bytes_ = 0;  // reads and writes in flight
  std::chrono::steady_clock::time_point last_progress_{};  // an operation completed (or the
                                                           // first began on an idle disk)
  std::chrono::steady_clock::time_point disabled_until_{};
};

}  // namespace valkyrie::tier
