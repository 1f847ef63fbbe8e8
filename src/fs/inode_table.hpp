#pragma once
// The inode table: every inode the kernel holds, found by number and by (parent, name, kind).
//
// Why this layout: `ls -l` of a big directory keeps one inode per entry, so every byte of an
// inode is paid 100,000 times over (issue 13: <= 300 bytes of RSS per entry, all structures
// together). An inode is one allocation: a 64-byte header, then its dir_state (directories
// only), then its name (a 16-byte name: one 96-byte malloc chunk). Numbers map to inodes
// through an array of slots (pointer + generation: 12 bytes, no hash table), and the
// (parent, name, kind) index is a flat open-addressing table of 8-byte cells (slot + hash).
//
// Inode numbers are slot | generation << 32. A slot is reused once its inode is freed, with its
// generation raised, so a freed number is simply not found and is not handed out again (until
// one slot has been reused 2^32 times). Numbers stay stable while the inode lives. The first
// numbers are 4, 5, 6...: 1 is the root, 2 and 3 are reserved for the control files.
// Threading: none; the filesystem calls it under its mutex.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "fs/dir_listing.hpp"

namespace valkyrie::fs {

using ino_t = std::uint64_t;
inline constexpr ino_t root_ino = 1;
// The control directory "/.valkyrie" and its file "order" (see filesystem::set_order).
inline constexpr ino_t control_dir_ino = 2;
inline constexpr ino_t order_file_ino = 3;

class inode_table {
 public:
  // A directory's cached listing (shared with readers).
  struct dir_state {
    std::shared_ptr<const dir_listing> listing;  // null: not listed, or found stale
    std::chrono::steady_clock::time_point listed_at{};
  };
  struct node {
    // The parent's slot, not its number: children keep their parent alive, so the slot cannot
    // be reused under them, and 4 bytes are enough.
    std::uint32_t parent = 0;
    // Kernel references. At the maximum the count sticks (the inode is never freed) rather than
    // wrap: a count too low would free an inode the kernel still uses.
    std::uint32_t lookups = 0;
    std::uint32_t children = 0;  // child inodes alive: they keep this one (their key's parent)
    std::uint8_t name_len = 0;
    bool directory = false;
    std::uint64_t size = 0;
    std::chrono::system_clock::time_point mtime{};
    std::uint64_t opened_etag = 0;  // fingerprint of the ETag at the last open (0: never opened)
    compact_etag etag;

    std::string_view name() const;
    dir_state* dir() { return directory ? reinterpret_cast<dir_state*>(this + 1) : nullptr; }
    const dir_state* dir() const {
      return directory ? reinterpret_cast<const dir_state*>(this + 1) : nullptr;
    }
    void add_lookup() {
      if (lookups != UINT32_MAX) ++lookups;
    }
    void drop_lookups(std::uint64_t count) {
      if (lookups != UINT32_MAX)
        lookups = count >= lookups ? 0 : lookups - static_cast<std::uint32_t>(count);
    }
  };
  static_assert(sizeof(node) == 64 && sizeof(dir_state) % alignof(node) == 0);

  // Holds the root (one lookup: the kernel keeps it forever).
  inode_table();
  ~inode_table();
  inode_table(const inode_table&) = delete;
  inode_table& operator=(const inode_table&) = delete;

  // The live inode with this number, or null.
  node* find(ino_t ino);
  const node* find(ino_t ino) const;
  // The number of the parent of a live inode.
  ino_t parent_of(const node& n) const { return ino_at(n.parent); }
  // The child of a live `parent` with this name and kind (0 if none).
  ino_t find_child(ino_t parent, std::string_view name, bool directory) const;
  // A new child of a live directory (none with this name and kind must exist); its parent's
  // children count goes up. Zero lookups: the caller counts them.
  ino_t add(ino_t parent, std::string_view name, bool directory);
  // Frees the inode if nothing holds it (no lookups, no children), then its parents likewise.
  void release(ino_t ino);
  // Live inodes, the root included.
  std::size_t size() const { return live_; }

 private:
  struct cell {
    std::uint32_t slot = 0;  // 0: empty (slot 0 is never used)
    std::uint32_t hash = 0;
  };
  ino_t ino_at(std::uint32_t slot) const { return slot | static_cast<ino_t>(gens_[slot]) << 32; }
  static std::uint32_t hash_of(std::uint32_t parent, std::string_view name, bool directory);
  // The index cell holding this key, or npos.
  std::size_t find_cell(std::uint32_t parent, std::string_view name, bool directory,
                        std::uint32_t hash) const;
  void index_insert(std::uint32_t slot, std::uint32_t hash);
  void index_erase(std::uint32_t slot);
  static node* make_node(std::string_view name, bool directory);
  static void free_node(node* n);
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::vector<node*> nodes_;         // by slot; null: free or reserved
  std::vector<std::uint32_t> gens_;  // by slot: the generation of its current (or next) inode
  std::vector<std::uint32_t> free_;  // slots to reuse
  std::vector<cell> index_;          // (parent, name, kind) -> slot; linear probing, power of 2
  std::size_t indexed_ = 0;
  std::size_t live_ = 0;
};

}  // namespace valkyrie::fs
