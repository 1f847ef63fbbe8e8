#pragma once
// Filling FUSE passthrough backing files (passthrough.hpp) from the chunk cache, on the reactors:
// at an open (the chunks all cached: copied at once), and ahead of the open (as the chunks of an
// object the prefetcher fetches whole arrive). Fresh pages of a file are backed on the reactor
// pool's background thread first, so a reactor never waits for the host to back memory.
#include <cstdint>
#include <memory>

#include "cache/chunk_id.hpp"
#include "core/asio.hpp"
#include "fs/filesystem.hpp"

namespace valkyrie::fuse {

class session;
class passthrough_files;

// The backing id an open of `file` (inode `ino`) is answered with, or -1 (through the page
// cache); either way the open is counted in `pt` until its release. An open answered with
// passthrough schedules what a first read would (the next files) and marks the chunks read.
awaitable<int> passthrough_open(session* s, passthrough_files* pt, std::uint64_t ino,
                                std::shared_ptr<fs::open_file> file);

// Fills a backing file for `object` from its chunks as they arrive (called for each object the
// prefetcher queued whole); gives up, leaving the open to copy, when a chunk is not cached or
// its fetch fails. When the pool has no room that free or idle files give, the prepare waits
// (passthrough_files::defer_prepare) until a release returns it, then goes on with
// fill_prepared.
awaitable<void> prepare_backing(session* s, passthrough_files* pt, cache::version_ref object);
awaitable<void> fill_prepared(session* s, passthrough_files* pt, cache::version_ref object);

}  // namespace valkyrie::fuse
