// Small chunks packed into slots (disk_store's design comment): the open packed slot, members
// dropped one by one, the replay of the journal's records into slots and their members.
#include <algorithm>
#include <limits>

#include "tier/disk_store.hpp"
#include "tier/tier_metrics.hpp"

namespace valkyrie::tier {

namespace {

std::uint64_t pages(std::uint64_t n) {
  return (n + block_align - 1) / block_align * block_align;
}

}  // namespace

std::uint64_t disk_store::footprint(const cache::chunk_id& id) const {
  return packs(id.length()) ? header_bytes + pages(id.length()) : stride_;
}

bool disk_store::has_room_for(const cache::chunk_id& id, std::uint64_t spare) const {
  std::lock_guard lock(mu_);
  const std::uint64_t free_bytes = std::uint64_t{free_.size()} * stride_;
  if (packs(id.length()) && open_ && slots_[*open_].fill + footprint(id) <= stride_)
    return free_bytes >= spare;
  return free_bytes >= spare + stride_;
}

const disk_store::member* disk_store::find_member(const slot_state& s, std::uint32_t offset) const {
  for (auto& mb : s.members)
    if (mb.offset == offset) return &mb;
  return nullptr;
}

std::uint64_t disk_store::slot_rank(const rank_fn& rank, const slot_state& s) const {
  std::uint64_t r = std::numeric_limits<std::uint64_t>::max();
  for (auto& mb : s.members) r = std::min(r, rank(mb.rec.id));
  return r;
}

void disk_store::encode_slot(std::string& out, std::uint32_t slot) const {
  const auto& s = slots_[slot];
  if (s.st != slot_state::state::used) return;
  for (auto& mb : s.members) encode_insert(out, slot, mb.offset, s.packed, mb.rec);
}

std::optional<disk_store::location> disk_store::reserve_packed_locked(const rank_fn* rank,
                                                                      std::uint64_t incoming,
                                                                      std::uint64_t length) {
  const std::uint64_t need = header_bytes + pages(length);
  if (open_) {
    auto& s = slots_[*open_];
    if (s.fill + need <= stride_) {
      location at{*open_, s.fill};
      s.fill += static_cast<std::uint32_t>(need);
      return at;
    }
    close_open_locked(rank);
  }
  auto taken = rank ? take_slot_ranked_locked(*rank, incoming) : take_slot_locked();
  if (!taken) {
    auto& m = detail::tier_metrics::get();
    if (rank) {
      ++stats_.writes_declined;
      m.writes_declined.add();
    } else {
      ++stats_.writes_dropped;
      m.writes_dropped.add();
    }
    return std::nullopt;
  }
  auto& s = slots_[*taken];
  s.st = slot_state::state::used;
  s.packed = true;
  s.ref = false;
  s.members.clear();
  s.fill = static_cast<std::uint32_t>(need);
  s.gen = ++seq_;
  ++stats_.used_slots;
  ++stats_.packed_slots;
  open_ = *taken;
  return location{*taken, 0};
}

void disk_store::close_open_locked(const rank_fn* rank) {
  if (!open_) return;
  const std::uint32_t slot = *open_;
  open_.reset();
  free_if_empty_locked(slot);
  // (now a candidate victim like any slot)
  if (rank && slots_[slot].st == slot_state::state::used && !slots_[slot].members.empty())
    note_ranked_locked(slot, slot_rank(*rank, slots_[slot]));
}

void disk_store::free_if_empty_locked(std::uint32_t slot) {
  auto& s = slots_[slot];
  if (s.st == slot_state::state::used && s.packed && s.members.empty() && s.writers == 0 &&
      open_ != slot)
    drop_locked(slot);
}

void disk_store::drop_member_locked(std::uint32_t slot, std::uint32_t offset) {
  auto& s = slots_[slot];
  auto it = std::find_if(s.members.begin(), s.members.end(),
                         [&](const member& mb) { return mb.offset == offset; });
  if (it == s.members.end()) return;
  index_.erase(it->rec.id);
  stats_.used_bytes -= it->rec.length;
  detail::tier_metrics::get().used_bytes.sub(it->rec.length);
  --stats_.chunks;
  --stats_.packed_chunks;
  s.members.erase(it);
  std::string rec;
  encode_remove_member(rec, slot, offset);
  // (if it cannot be journaled, a replayed record of it fails its check when read: a miss)
  if (auto jec = journal_.append(rec)) note_error_locked(jec, "journal");
  free_if_empty_locked(slot);
}

void disk_store::replay(const journal_record& r) {
  if (r.slot >= slots_.size()) return;
  auto& s = slots_[r.slot];
  auto erase_if = [&](slot_state& x, auto&& pred) {
    std::erase_if(x.members, [&](const member& mb) {
      if (!pred(mb)) return false;
      index_.erase(mb.rec.id);
      return true;
    });
    if (x.members.empty()) x.st = slot_state::state::free;
  };
  auto all = [](const member&) { return true; };
  if (r.type == record_type::remove) return erase_if(s, all);
  if (r.type == record_type::remove_member)
    return erase_if(s, [&](const member& mb) { return mb.offset == r.offset; });
  const std::uint64_t end = std::uint64_t{r.offset} + header_bytes + pages(r.rec.length);
  if (r.rec.id.chunk_size != opts_.chunk_size || r.rec.length != r.rec.id.length() ||
      r.packed != packs(r.rec.length) || r.offset % block_align != 0 || end > stride_ ||
      (!r.packed && r.offset != 0))
    return;
  seq_ = std::max(seq_, r.rec.seq);
  if (s.st == slot_state::state::used && (!s.packed || !r.packed)) {
    erase_if(s, all);  // (the slot was taken again: a remove was not journaled)
  } else if (s.st == slot_state::state::used) {
    erase_if(s, [&](const member& mb) {  // (members it overlaps: older)
      const std::uint64_t mb_end = std::uint64_t{mb.offset} + header_bytes + pages(mb.rec.length);
      return mb.offset < end && r.offset < mb_end;
    });
  }
  if (auto it = index_.find(r.rec.id); it != index_.end()) {
    // (the same chunk twice: the newer record wins)
    const location old = it->second;
    erase_if(slots_[old.slot], [&](const member& mb) { return mb.offset == old.offset; });
  }
  index_[r.rec.id] = {r.slot, r.offset};
  s.st = slot_state::state::used;
  s.packed = r.packed;
  s.ref = false;
  s.gen = std::max(s.gen, r.rec.seq);
  s.members.push_back({r.offset, r.rec});
}

void disk_store::finish_replay() {
  // Packed slots are all closed: the next small chunk opens a fresh one.
  for (std::uint32_t i = static_cast<std::uint32_t>(slots_.size()); i-- > 0;) {
    auto& s = slots_[i];
    if (s.st != slot_state::state::used || s.members.empty()) {
      s = slot_state{};
      free_.push_back(i);
      continue;
    }
    ++stats_.used_slots;
    stats_.chunks += s.members.size();
    if (s.packed) {
      ++stats_.packed_slots;
      stats_.packed_chunks += s.members.size();
    }
    for (auto& mb : s.members) {
      stats_.used_bytes += mb.rec.length;
      s.fill = std::max<std::uint32_t>(
          s.fill, static_cast<std::uint32_t>(mb.offset + header_bytes + pages(mb.rec.length)));
    }
  }
}

}  // namespace valkyrie::tier
