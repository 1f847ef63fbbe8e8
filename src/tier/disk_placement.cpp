// Placement by the training order on the disk tier (disk_store's Belady half; CLOCK is in
// disk_store.cpp).
//
// With a next-use rank (the memory cache's: larger is later), a full store evicts the slot read
// farthest in the future (a packed slot's rank: its member needed soonest; the open packed slot
// is never a victim, and a small chunk appended to it takes no victim and is never declined:
// only opening a packed slot is placed by rank), and only for a chunk needed sooner than it: a
// chunk needed later than everything the store holds is declined (not written), as the offline
// optimum (Belady with bypass) does. Finding the farthest slot without ranking every slot on every
// write: a scan keeps the victim_batch farthest slots (sorted, nearest first); every used slot
// outside that list ranked no farther than its first when scanned, and a slot stored later joins
// the list if it ranks farther than that. So the list's last entry is the farthest slot while the
// order's cursor stands still; as it moves, ranks change (a chunk read is next needed an epoch
// later), so each candidate is ranked again before it goes: a changed rank (the cursor moved)
// rebuilds the list, as do victim_batch evictions and a new order; slots read since the scan (a
// read moves a chunk's next use to the next epoch) are ranked again and join it if farther. Cost: a
// scan of the slots per eviction after the cursor moved (at most once per file read), a few
// ranks otherwise.
#include <algorithm>

#include "tier/disk_store.hpp"

namespace valkyrie::tier {

void disk_store::set_ranker(rank_fn ranker) {
  ranker_.store(ranker ? std::make_shared<const rank_fn>(std::move(ranker)) : nullptr);
}

void disk_store::scan_victims_locked(const rank_fn& rank) {
  victims_.clear();
  evictions_since_scan_ = 0;
  auto nearer = [](const victim& a, const victim& b) { return a.rank < b.rank; };
  // A min-heap of the farthest victim_batch seen so far.
  auto farther = [](const victim& a, const victim& b) { return a.rank > b.rank; };
  for (std::uint32_t i = 0; i < slots_.size(); ++i) {
    const auto& s = slots_[i];
    if (s.st != slot_state::state::used || open_ == i) continue;
    victim v{slot_rank(rank, s), i, s.gen};
    if (victims_.size() < victim_batch) {
      victims_.push_back(v);
      std::push_heap(victims_.begin(), victims_.end(), farther);
    } else if (v.rank > victims_.front().rank) {
      std::pop_heap(victims_.begin(), victims_.end(), farther);
      victims_.back() = v;
      std::push_heap(victims_.begin(), victims_.end(), farther);
    }
  }
  std::sort(victims_.begin(), victims_.end(), nearer);
}

void disk_store::note_ranked_locked(std::uint32_t slot, std::uint64_t rank) {
  // (an empty list says nothing about the slots outside it: the next eviction scans)
  if (victims_.empty() || rank < victims_.front().rank) return;
  victim v{rank, slot, slots_[slot].gen};
  victims_.insert(
      std::upper_bound(victims_.begin(), victims_.end(), v,
                       [](const victim& a, const victim& b) { return a.rank < b.rank; }),
      v);
  if (victims_.size() > victim_batch) victims_.erase(victims_.begin());  // (still the nearest)
}

std::optional<std::uint32_t> disk_store::take_slot_ranked_locked(const rank_fn& rank,
                                                                 std::uint64_t incoming) {
  if (!free_.empty()) {
    auto s = free_.back();
    free_.pop_back();
    return s;
  }
  auto current = ranker_.load();
  bool scanned = false;
  auto rescan = [&] {
    victims_for_ = current;
    scan_victims_locked(rank);
    touched_.clear();
    touched_overflow_ = false;
    scanned = true;
  };
  if (victims_for_ != current || victims_.empty() || evictions_since_scan_ >= victim_batch ||
      touched_overflow_) {
    rescan();
  } else {
    // Slots read since: their next use moved (later, usually); farther than the list's first,
    // they join it.
    for (auto slot : touched_)
      if (slots_[slot].st == slot_state::state::used && open_ != slot)
        note_ranked_locked(slot, slot_rank(rank, slots_[slot]));
    touched_.clear();
  }
  for (std::size_t tries = 0; tries < 4 * victim_batch; ++tries) {
    if (victims_.empty()) {
      if (scanned) return std::nullopt;
      rescan();
      continue;
    }
    const victim v = victims_.back();
    victims_.pop_back();
    auto& s = slots_[v.slot];
    if (s.st != slot_state::state::used || s.gen != v.seq || open_ == v.slot) continue;  // gone
    // Being read or written now: needed now, not a victim.
    if (s.readers > 0 || s.writers > 0) continue;
    const std::uint64_t now = slot_rank(rank, s);
    if (now != v.rank) {
      // The order's cursor moved since the scan (every rank shifts with it): rank them all
      // again, once per eviction.
      if (!scanned) {
        rescan();
        continue;
      }
      if (victims_.empty())
        victims_.push_back({now, v.slot, v.seq});
      else
        note_ranked_locked(v.slot, now);
      continue;
    }
    if (now <= incoming) {  // the farthest slot is needed no later than the incoming chunk
      victims_.push_back(v);
      return std::nullopt;
    }
    drop_locked(v.slot);  // (journaled as removed before it is overwritten)
    if (!free_.empty() && free_.back() == v.slot) free_.pop_back();
    ++evictions_since_scan_;
    return v.slot;
  }
  return std::nullopt;
}

}  // namespace valkyrie::tier
