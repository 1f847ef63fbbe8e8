#pragma once
// Anonymous memory for buffers that the kernel copies through in bulk (the chunk cache's arena,
// the FUSE io_uring entries' payloads): reserved without committing it (MAP_NORESERVE: a page
// is backed when first written), starting on a transparent huge page's boundary so that huge
// pages can cover all of it. Start-up and shutdown only; owned by one object, unmapped with it.
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <utility>

#include "core/result.hpp"

namespace valkyrie {

class huge_region {
 public:
  // An x86-64 / arm64 (4 KiB granule) transparent huge page.
  static constexpr std::size_t huge_page = std::size_t{2} << 20;

  // `bytes` of address space from a huge_page boundary; the mmap errno when it cannot be had.
  static result<huge_region> reserve(std::size_t bytes);

  huge_region() = default;
  huge_region(huge_region&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  huge_region& operator=(huge_region&& o) noexcept;
  huge_region(const huge_region&) = delete;
  huge_region& operator=(const huge_region&) = delete;
  ~huge_region();

  char* data() const { return data_; }
  std::size_t size() const { return bytes_; }

  // Asks for transparent huge pages over [from, from + bytes) (MADV_HUGEPAGE). False where the
  // kernel refuses (THP disabled): the range keeps 4 KiB pages and works as before.
  bool advise_huge(std::size_t from, std::size_t bytes) const;
  bool advise_huge() const { return advise_huge(0, bytes_); }

 private:
  huge_region(char* data, std::size_t bytes) : data_(data), bytes_(bytes) {}
  char* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace valkyrie
