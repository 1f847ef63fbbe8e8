#include "tier/disk_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/log.hpp"
#include "tier/crc32c.hpp"
#include "tier/tier_metrics.hpp"

namespace valkyrie::tier {

namespace {

std::uint64_t round_up(std::uint64_t n, std::uint64_t to) {
  return (n + to - 1) / to * to;
}

struct aligned_block {
  char* p;
  explicit aligned_block(std::size_t n)
      : p(static_cast<char*>(std::aligned_alloc(block_align, n))) {
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, n);
  }
  ~aligned_block() { std::free(p); }
  aligned_block(const aligned_block&) = delete;
  aligned_block& operator=(const aligned_block&) = delete;
};

// The pieces as O_DIRECT wants them: page-aligned, every piece but the last a whole number of
// pages, the last rounded up to its page (the memory behind it is the caller's). False if the
// memory is not laid out so.
template <class Span>
bool io_pieces(const std::vector<Span>& in, std::vector<Span>& out) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    auto addr = reinterpret_cast<std::uintptr_t>(in[i].data());
    if (addr % block_align != 0) return false;
    if (i + 1 < in.size() && in[i].size() % block_align != 0) return false;
    out.emplace_back(in[i].data(), round_up(in[i].size(), block_align));
  }
  return true;
}

std::string read_small_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

disk_store::disk_store(store_options opts) : opts_(std::move(opts)) {}

std::shared_ptr<disk_store> disk_store::open(store_options opts) {
  if (opts.dir.empty()) throw std::runtime_error("--disk-cache: no directory given");
  if (opts.chunk_size == 0) throw std::runtime_error("--disk-cache: chunk size 0");
  std::shared_ptr<disk_store> s(new disk_store(std::move(opts)));
  s->open_files();
  return s;
}

void disk_store::open_files() {
  const std::string& dir = opts_.dir;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::runtime_error("--disk-cache " + dir + ": not a directory (create it first)");
  stride_ = header_bytes + round_up(opts_.chunk_size, block_align);
  hung_limit_ =
      opts_.hung_after * std::max<std::uint64_t>(1, (opts_.chunk_size + (8 << 20) - 1) >> 23);
  const std::uint64_t nslots = opts_.size / stride_;
  if (nslots == 0)
    throw std::runtime_error("--disk-cache-size " + std::to_string(opts_.size) +
                             " is smaller than one slot (" + std::to_string(stride_) +
                             " bytes: a chunk and its 4 KiB header)");
  if (nslots > 0xFFFFFFF0u) throw std::runtime_error("--disk-cache-size: too many slots");

  // One daemon per directory.
  const std::string lock_path = dir + "/lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0)
    throw std::runtime_error("--disk-cache " + dir + ": cannot open " + lock_path + ": " +
                             std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    std::string holder = read_small_file(lock_path);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (e == EWOULDBLOCK)
      throw std::runtime_error("--disk-cache " + dir + " is in use by another valkyrie" +
                               (holder.empty() ? std::string() : " (pid " + holder + ")") +
                               ": give each mount its own directory");
    throw std::runtime_error("--disk-cache " + dir + ": cannot lock " + lock_path + ": " +
                             std::strerror(e));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0) {
    // (only the message of a second daemon loses the pid)
  }

  // Geometry: a directory written with another one starts empty.
  const unsigned nfiles =
      static_cast<unsigned>(std::min<std::uint64_t>(std::max(1u, opts_.files), nslots));
  per_file_ = static_cast<std::uint32_t>((nslots + nfiles - 1) / nfiles);
  const unsigned used_files = static_cast<unsigned>((nslots + per_file_ - 1) / per_file_);
  std::ostringstream meta;
  meta << "valkyrie-disk-cache 2 slot_bytes=" << stride_ << " chunk_bytes=" << opts_.chunk_size
       << " slots=" << nslots << " files=" << used_files << "\n";
  const std::string meta_path = dir + "/meta", journal_path = dir + "/journal";
  if (const auto old = read_small_file(meta_path); old != meta.str()) {
    if (!old.empty())  // (format 1: no packed slots, records without offsets; or a new size)
      log::event("tier", spdlog::level::warn,
                 "disk cache directory has another format or geometry: starting it empty",
                 {{"dir", dir},
                  {"was", old.substr(0, old.find('\n'))},
                  {"now", meta.str().substr(0, meta.str().size() - 1)}});
    ::unlink(meta_path.c_str());
    ::unlink(journal_path.c_str());
    for (unsigned i = used_files; i < 64; ++i)
      ::unlink((dir + "/data." + std::to_string(i)).c_str());
  }
  try {
    for (unsigned i = 0; i < used_files; ++i) {
      std::uint64_t n = std::min<std::uint64_t>(per_file_, nslots - std::uint64_t{i} * per_file_);
      files_.push_back(opts_.opener(dir + "/data." + std::to_string(i), n * stride_));
    }
  } catch (const std::system_error& e) {
    throw std::runtime_error(std::string("--disk-cache: ") + e.what() +
                             " (is --disk-cache-size more than the filesystem has free?)");
  }
  stats_.direct = !files_.empty() && files_.front()->direct();
  {
    std::ofstream f(meta_path, std::ios::trunc);
    f << meta.str();
    if (!f) throw std::runtime_error("--disk-cache: cannot write " + meta_path);
  }

  slots_.resize(nslots);
  try {
    journal_ = journal::open(
        journal_path, [this](const journal_record& r) { replay(r); }, stats_.replay);
  } catch (const std::system_error& e) {
    throw std::runtime_error(std::string("--disk-cache: ") + e.what());
  }
  finish_replay();
  stats_.slots = static_cast<std::uint32_t>(nslots);
  auto& m = detail::tier_metrics::get();
  m.capacity_bytes.add(static_cast<std::int64_t>(nslots * stride_));
  m.used_bytes.add(static_cast<std::int64_t>(stats_.used_bytes));
  if (stats_.replay.records > 2ull * stats_.chunks + 1024) checkpoint();
  log::event("tier", spdlog::level::info, "disk cache opened",
             {{"dir", dir},
              {"slots", nslots},
              {"chunks", stats_.chunks},
              {"packed_slots", stats_.packed_slots},
              {"records", stats_.replay.records},
              {"torn_bytes", stats_.replay.torn_bytes},
              {"replay_seconds", stats_.replay.seconds},
              {"direct", stats_.direct}});
}

disk_store::~disk_store() {
  if (lock_fd_ < 0) return;
  if (!slots_.empty()) {
    checkpoint();
    auto& m = detail::tier_metrics::get();
    std::lock_guard lock(mu_);
    m.capacity_bytes.sub(static_cast<std::int64_t>(slots_.size() * stride_));
    m.used_bytes.sub(static_cast<std::int64_t>(stats_.used_bytes));
  }
  files_.clear();
  ::close(lock_fd_);  // (releases the flock)
}

bool disk_store::admits(const cache::chunk_id& id) const {
  if (id.chunk_size != opts_.chunk_size || id.length() == 0) return false;
  const auto& o = *id.object;
  return o.bucket.size() + o.key.size() + o.etag.size() + 128 <= header_bytes;
}

bool disk_store::contains(const cache::chunk_id& id) const {
  std::lock_guard lock(mu_);
  return index_.count(id) != 0;
}

std::pair<block_file*, std::uint64_t> disk_store::where(std::uint32_t slot) const {
  return {files_[slot / per_file_].get(), std::uint64_t{slot % per_file_} * stride_};
}

void disk_store::drop_locked(std::uint32_t slot) {
  auto& s = slots_[slot];
  if (s.st != slot_state::state::used) return;
  for (auto& mb : s.members) {
    index_.erase(mb.rec.id);
    stats_.used_bytes -= mb.rec.length;
    detail::tier_metrics::get().used_bytes.sub(mb.rec.length);
  }
  stats_.chunks -= s.members.size();
  if (s.packed) {
    stats_.packed_chunks -= s.members.size();
    --stats_.packed_slots;
  }
  s.members.clear();
  if (open_ == slot) open_.reset();
  --stats_.used_slots;
  std::string rec;
  encode_remove(rec, slot);
  // (if it cannot be journaled, the slot's header, rewritten before reuse, still tells a replayed
  // stale record from what the slot holds: a check failure, never old bytes)
  if (auto jec = journal_.append(rec)) note_error_locked(jec, "journal");
  if (s.readers > 0) {
    s.st = slot_state::state::dropped;  // freed by its last reader
  } else {
    s.st = slot_state::state::free;
    free_.push_back(slot);
  }
}

void disk_store::release_reader_locked(std::uint32_t slot) {
  auto& s = slots_[slot];
  if (--s.readers == 0 && s.st == slot_state::state::dropped) {
    s.st = slot_state::state::free;
    free_.push_back(slot);
  }
}

std::optional<std::uint32_t> disk_store::take_slot_locked() {
  if (!free_.empty()) {
    auto s = free_.back();
    free_.pop_back();
    return s;
  }
  // CLOCK: at most two turns (the first may only clear reference bits).
  const std::uint64_t n = slots_.size();
  for (std::uint64_t step = 0; step < 2 * n; ++step) {
    const std::uint32_t i = hand_;
    hand_ = static_cast<std::uint32_t>((hand_ + 1) % n);
    auto& s = slots_[i];
    if (s.st != slot_state::state::used || s.readers > 0 || s.writers > 0 || open_ == i) continue;
    if (s.ref) {
      s.ref = false;
      continue;
    }
    drop_locked(i);  // (journaled as removed before it is overwritten)
    if (!free_.empty() && free_.back() == i) free_.pop_back();
    return i;
  }
  return std::nullopt;
}

awaitable<std::optional<std::size_t>> disk_store::read(cache::chunk_id id,
                                                       cache::chunk_buffers dest) {
  auto& m = detail::tier_metrics::get();
  std::uint32_t slot = 0, offset = 0;
  slot_record rec;
  bool packed = false;
  {
    std::lock_guard lock(mu_);
    auto it = usable_locked() ? index_.find(id) : index_.end();
    const member* mb =
        it == index_.end() ? nullptr : find_member(slots_[it->second.slot], it->second.offset);
    if (!mb) {
      ++stats_.misses;
      m.misses.add();
      co_return std::nullopt;
    }
    slot = it->second.slot;
    offset = it->second.offset;
    auto& s = slots_[slot];
    packed = s.packed;
    ++s.readers;
    s.ref = true;
    if (victims_for_) {  // (placed by the order: its next use moves on)
      if (touched_.size() < 4 * victim_batch)
        touched_.push_back(slot);
      else
        touched_overflow_ = true;
    }
    rec = mb->rec;
  }
  std::vector<std::span<char>> pieces;
  std::size_t total = 0;
  for (auto& p : dest) total += p.size();
  bool ok = total == rec.length && io_pieces(dest, pieces);
  std::error_code ec;
  bool bad = false;  // a check failed: the slot goes
  if (ok) {
    const std::uint64_t bytes = header_bytes + rec.length;
    std::uint64_t queued = 0;
    {
      std::lock_guard lock(mu_);
      queued = begin_io_locked(bytes);
    }
    const auto started = std::chrono::steady_clock::now();
    auto [file, base] = where(slot);
    const std::uint64_t at = base + offset;
    aligned_block header(header_bytes);
    // The header and the data in one request (readv); the header is checked after.
    pieces.insert(pieces.begin(), std::span<char>(header.p, header_bytes));
    ec = co_await file->readv_at(at, pieces);
    if (!ec) {
      journal_record h;
      bad = decode_record({header.p, header_bytes - 0}, h) == 0 || h.type != record_type::insert ||
            h.slot != slot || h.offset != offset || h.packed != packed || h.rec.seq != rec.seq ||
            h.rec.crc != rec.crc || h.rec.length != rec.length || !(h.rec.id == id);
    }
    const auto took = std::chrono::steady_clock::now() - started;  // (the disk's time alone)
    {
      std::lock_guard lock(mu_);
      end_io_locked(bytes);
      note_io_locked(ec, took, queued, "read");
    }
    if (!ec && !bad) {
      std::uint32_t crc = crc32c_seed;
      for (auto& p : dest) crc = crc32c(p, crc);
      bad = crc != rec.crc;
    }
  }
  std::lock_guard lock(mu_);
  if (ok && !ec && !bad) {
    release_reader_locked(slot);
    ++stats_.hits;
    stats_.bytes_read += rec.length;
    m.hits.add();
    m.bytes_read.add(rec.length);
    co_return std::size_t{rec.length};
  }
  if (bad) {
    ++stats_.check_failures;
    m.check_failures.add();
    log::limited("tier", spdlog::level::warn, "disk_check",
                 "disk cache chunk failed its check: dropped, read from S3",
                 {{"dir", opts_.dir},
                  {"slot", slot},
                  {"offset", offset},
                  {"key", id.object->key},
                  {"chunk", id.index}});
  }
  // A chunk that cannot be read back (check failure or I/O error) goes; it is written again
  // after its next fetch.
  if (bad || ec) {
    auto& s = slots_[slot];
    const member* now = s.st == slot_state::state::used ? find_member(s, offset) : nullptr;
    if (now && now->rec.seq == rec.seq) {
      if (s.packed)
        drop_member_locked(slot, offset);  // (the others are checked when read)
      else
        drop_locked(slot);
    }
  }
  release_reader_locked(slot);
  ++stats_.misses;
  m.misses.add();
  co_return std::nullopt;
}

void disk_store::count_dropped() {
  detail::tier_metrics::get().writes_dropped.add();
  std::lock_guard lock(mu_);
  ++stats_.writes_dropped;
}

awaitable<bool> disk_store::write(cache::chunk_id id, std::vector<std::span<const char>> data) {
  auto& m = detail::tier_metrics::get();
  std::vector<std::span<const char>> pieces;
  std::size_t total = 0;
  for (auto& p : data) total += p.size();
  if (!admits(id) || total != id.length() || !io_pieces(data, pieces)) {
    count_dropped();
    co_return false;
  }
  std::uint32_t slot = 0, offset = 0;
  slot_record rec;
  rec.id = id;
  rec.length = static_cast<std::uint32_t>(total);
  const bool packed = packs(total);
  // With a training order: placed by next use (disk_placement.cpp).
  const auto ranker = ranker_.load();
  const std::uint64_t rank = ranker ? (*ranker)(id) : 0;
  {
    std::lock_guard lock(mu_);
    if (index_.count(id) || writing_.count(id)) co_return false;
    if (!usable_locked()) {
      ++stats_.writes_dropped;
      m.writes_dropped.add();
      co_return false;
    }
    if (packed) {  // (a small chunk: appended to the open packed slot, disk_pack.cpp)
      auto at = reserve_packed_locked(ranker.get(), rank, total);
      if (!at) co_return false;
      slot = at->slot;
      offset = at->offset;
      ++slots_[slot].writers;
      writing_.insert(id);
      rec.seq = ++seq_;
    }
    auto taken = packed   ? std::optional<std::uint32_t>(slot)
                 : ranker ? take_slot_ranked_locked(*ranker, rank)
                          : take_slot_locked();
    if (!taken && ranker) {
      ++stats_.writes_declined;
      m.writes_declined.add();
      co_return false;
    }
    if (!taken) {
      ++stats_.writes_dropped;
      m.writes_dropped.add();
      co_return false;
    }
    if (!packed) {
      slot = *taken;
      slots_[slot].st = slot_state::state::writing;
      writing_.insert(id);
      rec.seq = ++seq_;
    }
  }
  rec.crc = crc32c_seed;
  for (auto& p : data) rec.crc = crc32c(p, rec.crc);
  aligned_block header(header_bytes);
  {
    std::string h;
    encode_insert(h, slot, offset, packed, rec);
    std::memcpy(header.p, h.data(), h.size());  // (admits() keeps it under header_bytes)
  }
  auto [file, base] = where(slot);
  const std::uint64_t at = base + offset;
  // The header and the data in one request (writev). A torn write is still never served: the
  // slot's journal record is appended only after it completed, and a read checks the data's
  // CRC32C against that record.
  pieces.insert(pieces.begin(), std::span<const char>(header.p, header_bytes));
  std::uint64_t queued = 0;
  {
    std::lock_guard lock(mu_);
    queued = begin_io_locked(header_bytes + total);
  }
  const auto started = std::chrono::steady_clock::now();
  std::error_code ec = co_await file->writev_at(at, std::move(pieces));
  const auto took = std::chrono::steady_clock::now() - started;
  std::unique_lock lock(mu_);
  end_io_locked(header_bytes + total);
  writing_.erase(id);
  auto& s = slots_[slot];
  if (packed) --s.writers;
  if (ec) {
    note_io_locked(ec, took, queued, "write");
    if (packed) {
      free_if_empty_locked(slot);  // (its room is not reused: the slot stays as it is)
    } else {
      s.st = slot_state::state::free;
      free_.push_back(slot);
    }
    ++stats_.writes_dropped;
    m.writes_dropped.add();
    co_return false;
  }
  s.members.push_back({offset, rec});
  index_[id] = {slot, offset};
  ++stats_.chunks;
  if (packed) {
    ++stats_.packed_chunks;
    if (ranker && open_ != slot) note_ranked_locked(slot, slot_rank(*ranker, s));
  } else {
    s.st = slot_state::state::used;
    s.packed = false;
    s.gen = rec.seq;
    s.ref = false;
    ++stats_.used_slots;
    if (ranker) note_ranked_locked(slot, rank);
  }
  ++stats_.writes;
  stats_.used_bytes += rec.length;
  stats_.bytes_written += rec.length;
  m.used_bytes.add(rec.length);
  m.bytes_written.add(rec.length);
  std::string r;
  encode_insert(r, slot, offset, packed, rec);
  // A journal that cannot grow (the filesystem full: ENOSPC) is an error like the data's: the
  // chunk is served from memory's index now but not found after a restart; repeated, the
  // store steps aside. (One outcome per write: data written on time does not end the streak
  // when its record could not be journaled.)
  const auto jec = journal_.append(r);
  note_io_locked(jec, took, queued, jec ? "journal" : "write");
  if (journal_.rewriting() || journal_.appended_records() <= 2ull * stats_.chunks + 4096)
    co_return true;
  // A checkpoint: the live records now, written off the lock (journal.hpp).
  std::string all = encode_live_locked();
  journal_.begin_rewrite();
  lock.unlock();
  std::error_code cec = co_await journal_.write_rewrite(std::move(all));
  lock.lock();
  if (cec)
    journal_.abort_rewrite();
  else
    cec = journal_.finish_rewrite();
  if (cec)
    note_error_locked(cec, "checkpoint");
  else
    ++stats_.checkpoints;
  co_return true;
}

std::string disk_store::encode_live_locked() const {
  std::string all;
  all.reserve(std::size_t{stats_.chunks} * 160);
  for (std::uint32_t i = 0; i < slots_.size(); ++i) encode_slot(all, i);
  return all;
}

std::error_code disk_store::checkpoint() {
  std::lock_guard lock(mu_);
  return journal_.rewrite(encode_live_locked());
}

store_stats disk_store::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace valkyrie::tier
