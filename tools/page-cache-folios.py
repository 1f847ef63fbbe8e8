#!/usr/bin/env python3
"""How big the kernel's page-cache folios of a file are, after one buffered read of it.

Why: the kernel's per-page work on a FUSE mount (copying each reply into the page cache, freeing
pages behind a reader) is done once per folio. A kernel that caches FUSE files in large folios
does it 16-256 x less often than one that uses 4 KiB folios; this says which one is running.

Usage (root: /proc/kpageflags): tools/page-cache-folios.py FILE [FILE...]
  e.g. a file on the mount, and for comparison one on a local file system.
Reads each FILE whole (1 MiB reads), maps it privately without writing (so the mapping shows
the page-cache pages themselves), and counts its pages by folio: the heads of large folios, their
tail pages, and pages that are folios of their own.
"""
import ctypes
import mmap
import os
import struct
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
COMPOUND_HEAD, COMPOUND_TAIL = 1 << 15, 1 << 16  # Documentation/admin-guide/mm/pagemap.rst
PFN_MASK, PRESENT = (1 << 55) - 1, 1 << 63


def folios(path):
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        while f.readinto(buf):
            pass
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0, 0, 0, 0
        m = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
    try:
        first = ctypes.c_char.from_buffer(m)  # (only for the mapping's address)
        base = ctypes.addressof(first) // PAGE
        del first  # (an exported buffer would keep the mapping from closing)
        pages = (size + PAGE - 1) // PAGE  # the last, partial page too (a 110 KiB file has 28)
        heads = tails = small = 0
        # Unbuffered: a buffered read would hand back entries read before their pages were mapped.
        with open("/proc/self/pagemap", "rb", buffering=0) as pm, \
                open("/proc/kpageflags", "rb", buffering=0) as kf:
            for i in range(pages):
                _ = m[i * PAGE]  # fault the page in (read: still the page cache's own page)
                pm.seek((base + i) * 8)
                entry = struct.unpack("Q", pm.read(8))[0]
                if not entry & PRESENT:  # (pfn 0 would be read as some other page's flags)
                    raise RuntimeError(f"{path}: page {i} is not mapped after reading it")
                kf.seek((entry & PFN_MASK) * 8)
                flags = struct.unpack("Q", kf.read(8))[0]
                if flags & COMPOUND_HEAD:
                    heads += 1
                elif flags & COMPOUND_TAIL:
                    tails += 1
                else:
                    small += 1
        return pages, heads, tails, small
    finally:
        m.close()


def main():
    if len(sys.argv) < 2:
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("page-cache-folios: needs root (/proc/kpageflags)", file=sys.stderr)
        return 1
    for path in sys.argv[1:]:
        pages, heads, tails, small = folios(path)
        mean = pages / (heads + small) if heads + small else 0
        print(f"{path}: {pages} pages, {heads} large folios ({tails} tail pages), "
              f"{small} single-page folios, mean folio {mean * PAGE / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
