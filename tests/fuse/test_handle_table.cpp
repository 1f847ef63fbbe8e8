#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "fuse/handle_table.hpp"

using namespace valkyrie::fuse;

namespace test_handle_table {
struct counted {
  static inline int alive = 0;
  std::string name;
  explicit counted(std::string n) : name(std::move(n)) { ++alive; }
  ~counted() { --alive; }
};

TEST_CASE(
    "handle_table: an fh finds its handle; release deletes it; those never released go with the "
    "table") {
  counted::alive = 0;
  {
    handle_table table;
    auto a = table.adopt(new counted("a"));
    auto b = table.adopt(new counted("b"));
    auto c = table.adopt(new std::shared_ptr<counted>(std::make_shared<counted>("c")));
    CHECK(handle_table::get<counted>(a)->name == "a");
    CHECK((*handle_table::get<std::shared_ptr<counted>>(c))->name == "c");
    CHECK(table.size() == 3);
    CHECK(counted::alive == 3);
    table.release<counted>(a);
    CHECK(counted::alive == 2);
    CHECK(table.size() == 2);
    (void)b;  // never released: the connection aborted with it open
  }
  CHECK(counted::alive == 0);
}
}  // namespace test_handle_table
