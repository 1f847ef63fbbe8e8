// The inode table on its own: numbers, the (parent, name, kind) index, freeing and slot reuse.
#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <tuple>

#include "fs/inode_table.hpp"

using namespace valkyrie::fs;

TEST_CASE("inode table: numbers start after the fixed ones and names are kept inline") {
  inode_table t;
  CHECK(t.size() == 1);
  REQUIRE(t.find(root_ino));
  CHECK(t.find(root_ino)->directory);
  CHECK(!t.find(0));
  CHECK(!t.find(control_dir_ino));
  CHECK(!t.find(order_file_ino));
  ino_t a = t.add(root_ino, "a.txt", false);
  ino_t d = t.add(root_ino, "dir", true);
  CHECK(a == 4);
  CHECK(d == 5);
  CHECK(t.find(a)->name() == "a.txt");
  CHECK(t.find(a)->dir() == nullptr);
  CHECK(t.find(d)->name() == "dir");
  REQUIRE(t.find(d)->dir());
  CHECK(!t.find(d)->dir()->listing);
  CHECK(t.parent_of(*t.find(a)) == root_ino);
  CHECK(t.find_child(root_ino, "a.txt", false) == a);
  CHECK(t.find_child(root_ino, "a.txt", true) == 0);  // the kind is part of the key
  CHECK(t.find_child(root_ino, "dir", true) == d);
  CHECK(t.find_child(root_ino, "nope", false) == 0);
  CHECK(t.find(root_ino)->children == 2);
  CHECK(t.size() == 3);
}

TEST_CASE("inode table: a freed number is not found again; its slot is reused under a new number") {
  inode_table t;
  ino_t d = t.add(root_ino, "d", true);
  ino_t f = t.add(d, std::string(255, 'x'), false);
  t.find(d)->lookups = 1;
  t.find(f)->lookups = 1;
  t.find(f)->drop_lookups(1);
  t.release(f);
  CHECK(!t.find(f));
  CHECK(t.find(d));  // still looked up
  CHECK(t.find_child(d, std::string(255, 'x'), false) == 0);
  CHECK(t.find(d)->children == 0);
  ino_t g = t.add(d, "g", false);
  CHECK(g != f);
  CHECK((g & 0xffffffffu) == (f & 0xffffffffu));  // same slot, next generation
  CHECK(!t.find(f));
  CHECK(t.find(g)->name() == "g");
  // A child keeps its parent: releasing the parent waits for the child.
  t.find(d)->drop_lookups(1);
  t.release(d);
  CHECK(t.find(d));
  t.release(g);  // no lookups: goes, and takes the parent with it
  CHECK(!t.find(g));
  CHECK(!t.find(d));
  CHECK(t.size() == 1);
  CHECK(t.find(root_ino)->children == 0);
  // A stale parent number finds no children, even once its slot holds another directory.
  ino_t e = t.add(root_ino, "e", true);
  CHECK((e & 0xffffffffu) == (d & 0xffffffffu));
  t.add(e, "g", false);
  CHECK(t.find_child(d, "g", false) == 0);
  CHECK(t.find_child(e, "g", false) != 0);
}

TEST_CASE("inode table: lookup counts stick at the maximum rather than wrap") {
  inode_table t;
  ino_t a = t.add(root_ino, "a", false);
  auto* n = t.find(a);
  n->lookups = UINT32_MAX - 1;
  n->add_lookup();
  n->add_lookup();
  CHECK(n->lookups == UINT32_MAX);
  n->drop_lookups(UINT32_MAX);
  CHECK(n->lookups == UINT32_MAX);
  t.release(a);
  CHECK(t.find(a));
}

TEST_CASE("inode table: the index agrees with a reference map through many adds and frees") {
  inode_table t;
  std::map<std::tuple<ino_t, std::string, bool>, ino_t> ref;
  std::vector<ino_t> dirs{root_ino};
  std::mt19937 rng(7);
  for (int step = 0; step < 20000; ++step) {
    if (rng() % 3 != 0 || ref.empty()) {
      ino_t parent = dirs[rng() % dirs.size()];
      std::string name = "n" + std::to_string(rng() % 500);
      bool dir = rng() % 8 == 0;
      auto key = std::make_tuple(parent, name, dir);
      if (ref.count(key)) continue;
      ino_t ino = t.add(parent, name, dir);
      t.find(ino)->lookups = 1;
      ref[key] = ino;
      if (dir) dirs.push_back(ino);
    } else {
      auto it = ref.begin();
      std::advance(it, rng() % ref.size());
      ino_t ino = it->second;
      if (t.find(ino)->children > 0) continue;
      t.find(ino)->drop_lookups(1);
      t.release(ino);
      CHECK(!t.find(ino));
      if (std::get<2>(it->first)) std::erase(dirs, ino);
      ref.erase(it);
    }
  }
  CHECK(t.size() == ref.size() + 1);
  for (auto& [key, ino] : ref) {
    CHECK(t.find_child(std::get<0>(key), std::get<1>(key), std::get<2>(key)) == ino);
    CHECK(t.find(ino)->name() == std::get<1>(key));
  }
}
