#include "core/huge_region.hpp"

#include <sys/mman.h>

#include <cerrno>

namespace valkyrie {

result<huge_region> huge_region::reserve(std::size_t bytes) {
  if (bytes == 0) return huge_region{};
  // Reserved one huge page longer, the ends trimmed, so that it starts on a boundary.
  const std::size_t reserve = bytes + huge_page;
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return std::error_code(errno, std::generic_category());
  const auto base = reinterpret_cast<std::uintptr_t>(p);
  const auto aligned = (base + huge_page - 1) / huge_page * huge_page;
  if (aligned > base) ::munmap(p, aligned - base);
  if (const auto end = aligned + bytes; end < base + reserve)
    ::munmap(reinterpret_cast<void*>(end), base + reserve - end);
  return huge_region(reinterpret_cast<char*>(aligned), bytes);
}

huge_region& huge_region::operator=(huge_region&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(data_, bytes_);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

huge_region::~huge_region() {
  if (data_) ::munmap(data_, bytes_);
}

bool huge_region::advise_huge(std::size_t from, std::size_t bytes) const {
  return bytes == 0 || ::madvise(data_ + from, bytes, MADV_HUGEPAGE) == 0;
}

}  // namespace valkyrie
