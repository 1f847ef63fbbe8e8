#!/usr/bin/env python3
"""Hand a training order to a running Valkyrie-FS mount (live order hints).

A valkyrie mount serves a control file, MOUNT/.valkyrie/order. Writing it replaces the order in
which the job will read its files: valkyrie then prefetches the next files of that order, warms up
its first files at once and evicts what is needed furthest in the future. The format is that of
--manifest: one key per line, relative to the mount (its --prefix), '#' comments; repeated keys
are later epochs. The order applies from its first key, so write each epoch's order just before
the epoch starts. Only the mount's owner (--uid) or root may write it. An order whose lines
name no file at all is refused (the close fails with EINVAL) and the previous one stays; unknown
keys are skipped and listed when the file is read back. An empty order clears it.

From Python:

    import valkyrie_order
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        valkyrie_order.write_order(valkyrie_order.order_from_sampler(sampler, dataset.shard_of))
        for batch in loader: ...

    # a WebDataset shard list (brace ranges expanded, "file:" / "pipe:cat " stripped)
    valkyrie_order.write_order(valkyrie_order.order_from_webdataset("/mnt/data/train-{000000..000127}.tar"))

From a shell:

    valkyrie-order /mnt/data order.txt     # keys or paths, one per line ("-": stdin)
    valkyrie-order /mnt/data --show        # the order in force
    valkyrie-order /mnt/data --clear
"""
import argparse
import os
import re
import sys

CONTROL = os.path.join(".valkyrie", "order")


class OrderRefused(OSError):
    """The mount refused the order (no line named a file of the bucket)."""


def find_mount(path):
    """The valkyrie mount that holds `path` (a file or directory inside it, or the mount itself)."""
    p = os.path.abspath(path)
    while True:
        if os.path.ismount(p) and os.path.exists(os.path.join(p, CONTROL)):
            return p
        parent = os.path.dirname(p)
        if parent == p:
            raise FileNotFoundError(f"{path} is not inside a valkyrie mount (no {CONTROL} above it)")
        p = parent


def to_keys(items, mount=None):
    """(mount, keys): absolute paths under a mount become keys relative to it; other items are
    taken as keys already (then `mount` must be given)."""
    items = [str(i) for i in items]
    if mount is None:
        first_path = next((i for i in items if os.path.isabs(i)), None)
        if first_path is None:
            raise ValueError("keys without a mount: pass mount=")
        mount = find_mount(os.path.dirname(first_path))
    mount = os.path.abspath(mount)
    keys = []
    for item in items:
        if os.path.isabs(item):
            rel = os.path.relpath(item, mount)
            if rel.startswith(".." + os.sep) or rel == "..":
                raise ValueError(f"{item} is not under the mount {mount}")
            keys.append(rel)
        else:
            keys.append(item.lstrip("/"))
    return mount, keys


def write_order(items, mount=None):
    """Makes `items` (keys relative to the mount, or paths inside it) the mount's training order.
    Returns the number of keys sent; raises OrderRefused when the mount accepted none of them."""
    mount, keys = to_keys(items, mount)
    text = "".join(k + "\n" for k in keys)
    try:
        # One write, checked at close: the mount answers the close with the order's fate.
        fd = os.open(os.path.join(mount, CONTROL), os.O_WRONLY | os.O_TRUNC)
        try:
            view = memoryview(text.encode())
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno == 22:  # EINVAL
            raise OrderRefused(e.errno, f"{mount}: no line of the order names a file of the bucket "
                                        f"(see the mount's log, or {CONTROL} for the skipped lines)") from None
        raise
    return len(keys)


def clear_order(mount):
    """Back to no order (numbered names and listing order predict the next files)."""
    with open(os.path.join(find_mount(mount), CONTROL), "w"):
        pass


def read_order(mount):
    """(header lines, keys) of the order in force."""
    with open(os.path.join(find_mount(mount), CONTROL)) as f:
        lines = f.read().splitlines()
    return [l for l in lines if l.startswith("#")], [l for l in lines if l and not l.startswith("#")]


def order_from_sampler(sampler, file_of):
    """The files a map-style dataset will read, in the sampler's order: file_of(index) names the
    file (key or path) holding sample `index`; consecutive samples of one file count once."""
    out = []
    for index in sampler:
        f = file_of(index)
        if not out or out[-1] != f:
            out.append(f)
    return out


_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(pattern):
    """WebDataset's shard notation: "train-{000..009}.tar" -> train-000.tar ... train-009.tar
    (zero padding kept; several ranges multiply); "a.tar::b.tar" lists."""
    out = []
    for part in pattern.split("::"):
        m = _BRACE.search(part)
        if not m:
            out.append(part)
            continue
        lo, hi = m.group(1), m.group(2)
        width = len(lo) if lo.startswith("0") else 0
        for n in range(int(lo), int(hi) + 1):
            out += expand_braces(part[: m.start()] + str(n).zfill(width) + part[m.end():])
    return out


def order_from_webdataset(urls):
    """Shard paths from a WebDataset url list or brace pattern, in order ("file:" and
    "pipe:cat " prefixes removed)."""
    if isinstance(urls, str):
        urls = expand_braces(urls)
    out = []
    for u in urls:
        for prefix in ("file://", "file:", "pipe:cat "):
            if u.startswith(prefix):
                u = u[len(prefix):]
        out.append(u.strip())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mount", help="the valkyrie mount (or a directory inside it)")
    p.add_argument("order", nargs="?", help="file of keys or paths, one per line ('-': stdin)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--show", action="store_true", help="print the order in force")
    g.add_argument("--clear", action="store_true", help="drop the order")
    a = p.parse_args()
    try:
        mount = find_mount(a.mount)
        if a.show:
            header, keys = read_order(mount)
            print("\n".join(header + keys))
        elif a.clear:
            clear_order(mount)
        elif a.order:
            src = sys.stdin if a.order == "-" else open(a.order)
            with src:
                items = [l.strip() for l in src if l.strip() and not l.lstrip().startswith("#")]
            n = write_order(items, mount)
            header, _ = read_order(mount)
            print(f"{n} lines sent; {header[0].lstrip('# ') if header else ''}")
        else:
            p.error("name an order file, --show or --clear")
    except (OSError, ValueError) as e:
        sys.exit(f"valkyrie-order: {e}")


if __name__ == "__main__":
    main()
