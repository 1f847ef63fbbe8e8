#include "fs/inode_table.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <new>

namespace valkyrie::fs {

std::string_view inode_table::node::name() const {
  const char* bytes = reinterpret_cast<const char*>(this + 1) + (directory ? sizeof(dir_state) : 0);
  return {bytes, name_len};
}

inode_table::node* inode_table::make_node(std::string_view name, bool directory) {
  // One allocation: header, dir_state (directories), name bytes.
  const std::size_t bytes = sizeof(node) + (directory ? sizeof(dir_state) : 0) + name.size();
  void* mem = ::operator new(bytes);
  node* n = new (mem) node{};
  n->directory = directory;
  n->name_len = static_cast<std::uint8_t>(name.size());
  if (directory) new (n->dir()) dir_state{};
  // (The root's name is empty and may have no data pointer: memcpy from null is undefined.)
  if (!name.empty()) std::memcpy(const_cast<char*>(n->name().data()), name.data(), name.size());
  return n;
}

void inode_table::free_node(node* n) {
  if (n->directory) n->dir()->~dir_state();
  n->~node();
  ::operator delete(static_cast<void*>(n));
}

inode_table::inode_table() : nodes_(order_file_ino + 1, nullptr), gens_(order_file_ino + 1, 0) {
  // Slot 0 is "none"; root_ino's slot holds the root; the control files' slots stay empty.
  node* root = make_node({}, true);
  root->parent = root_ino;
  root->lookups = 1;  // the kernel holds the root forever
  root->mtime = std::chrono::system_clock::now();
  nodes_[root_ino] = root;
  live_ = 1;
}

inode_table::~inode_table() {
  for (node* n : nodes_)
    if (n) free_node(n);
}

inode_table::node* inode_table::find(ino_t ino) {
  return const_cast<node*>(static_cast<const inode_table*>(this)->find(ino));
}

const inode_table::node* inode_table::find(ino_t ino) const {
  const std::uint64_t slot = ino & 0xffffffffu;
  if (slot >= nodes_.size() || gens_[slot] != ino >> 32) return nullptr;
  return nodes_[slot];
}

std::uint32_t inode_table::hash_of(std::uint32_t parent, std::string_view name, bool directory) {
  std::uint64_t h = std::hash<std::string_view>()(name);
  h ^= ((static_cast<std::uint64_t>(parent) << 1) | directory) * 0x9E3779B97F4A7C15ull;
  // Fold the high bits in: the table indexes by the low ones.
  h ^= h >> 32;
  return static_cast<std::uint32_t>(h);
}

std::size_t inode_table::find_cell(std::uint32_t parent, std::string_view name, bool directory,
                                   std::uint32_t hash) const {
  if (index_.empty()) return npos;
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
    const cell& c = index_[i];
    if (c.slot == 0) return npos;
    if (c.hash != hash) continue;
    const node* n = nodes_[c.slot];
    if (n->parent == parent && n->directory == directory && n->name() == name) return i;
  }
}

ino_t inode_table::find_child(ino_t parent, std::string_view name, bool directory) const {
  if (!find(parent)) return 0;
  const auto p = static_cast<std::uint32_t>(parent);
  const std::size_t i = find_cell(p, name, directory, hash_of(p, name, directory));
  return i == npos ? 0 : ino_at(index_[i].slot);
}

void inode_table::index_insert(std::uint32_t slot, std::uint32_t hash) {
  // At most 80% full (linear probing stays short; 10 bytes an entry at 100,000 entries).
  if ((indexed_ + 1) * 5 > index_.size() * 4) {
    std::vector<cell> old(std::max<std::size_t>(16, index_.size() * 2));
    old.swap(index_);
    const std::size_t mask = index_.size() - 1;
    for (const cell& c : old) {
      if (c.slot == 0) continue;
      std::size_t i = c.hash & mask;
      while (index_[i].slot != 0) i = (i + 1) & mask;
      index_[i] = c;
    }
  }
  const std::size_t mask = index_.size() - 1;
  std::size_t i = hash & mask;
  while (index_[i].slot != 0) i = (i + 1) & mask;
  index_[i] = {slot, hash};
  ++indexed_;
}

void inode_table::index_erase(std::uint32_t slot) {
  const node* n = nodes_[slot];
  std::size_t hole =
      find_cell(n->parent, n->name(), n->directory, hash_of(n->parent, n->name(), n->directory));
  if (hole == npos) return;
  // Backward shift: later cells of the run move into the hole unless that would put them
  // before their home cell, so lookups never meet a gap inside a run.
  const std::size_t mask = index_.size() - 1;
  for (std::size_t j = (hole + 1) & mask; index_[j].slot != 0; j = (j + 1) & mask) {
    const std::size_t home = index_[j].hash & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      index_[hole] = index_[j];
      hole = j;
    }
  }
  index_[hole] = {};
  --indexed_;
}

ino_t inode_table::add(ino_t parent, std::string_view name, bool directory) {
  const auto p = static_cast<std::uint32_t>(parent);
  std::uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(nodes_.size());
    nodes_.push_back(nullptr);
    gens_.push_back(0);
  }
  node* n = make_node(name, directory);
  n->parent = p;
  nodes_[slot] = n;
  index_insert(slot, hash_of(p, name, directory));
  ++nodes_[p]->children;
  ++live_;
  return ino_at(slot);
}

void inode_table::release(ino_t ino) {
  while (ino != root_ino) {
    node* n = find(ino);
    if (!n || n->lookups > 0 || n->children > 0) return;
    const auto slot = static_cast<std::uint32_t>(ino);
    const std::uint32_t parent = n->parent;
    index_erase(slot);  // (hashes through the node: before it goes)
    free_node(n);
    nodes_[slot] = nullptr;
    ++gens_[slot];  // its number is not found again
    free_.push_back(slot);
    --live_;
    --nodes_[parent]->children;
    ino = ino_at(parent);
  }
}

}  // namespace valkyrie::fs
