// The FUSE wire decoder/encoder (fuse/wire.*) on byte buffers laid out with <linux/fuse.h>'s
// structs, as the kernel sends them: each op is called with the arguments the request carries,
// its replies come out as the structs the kernel reads, bad input is answered (EINVAL, ENOSYS)
// instead of crashing, INTERRUPT reaches the request that asked for it, and the INIT reply
// offers FUSE over io_uring only when asked and when the kernel does.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <linux/fuse.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/reactor_pool.hpp"
#include "fuse/passthrough_abi.hpp"
#include "fuse/session.hpp"
#include "fuse/wire.hpp"
#include "s3/memory_client.hpp"

using namespace valkyrie;
using namespace valkyrie::fuse;

namespace test_wire {

struct sent {
  std::uint64_t unique;
  int error;
  std::string payload;
};
struct capture_sink : reply_sink {
  std::vector<sent> replies;
  int send(std::uint64_t unique, int error, std::span<const iovec> payload) override {
    std::string p;
    for (auto& v : payload) p.append(static_cast<const char*>(v.iov_base), v.iov_len);
    replies.push_back({unique, error, p});
    return 0;
  }
};

// What the stub ops saw, and what they do with the request.
struct seen_t {
  std::string op, name, data;
  fuse_ino_t ino = 0;
  std::uint64_t fh = 0, count = 0;
  off_t off = 0;
  int flags = 0, to_set = 0;
  std::vector<fuse_forget_data> forgets;
  request_ptr kept;  // a request the test answers itself
} seen;

op_table stubs() {
  op_table t;
  t.lookup = [](request_ptr req, fuse_ino_t parent, const char* name) {
    seen.op = "lookup", seen.ino = parent, seen.name = name;
    fuse_entry_param e;
    std::memset(&e, 0, sizeof e);
    e.ino = 42;
    e.attr.st_ino = 42;
    e.attr.st_mode = S_IFREG | 0444;
    e.attr.st_size = 12345;
    e.attr_timeout = e.entry_timeout = 1.5;
    req->reply_entry(e);
  };
  t.read = [](request_ptr req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    seen.op = "read", seen.ino = ino, seen.count = size, seen.off = off, seen.fh = fi->fh;
    seen.kept = std::move(req);
  };
  t.write = [](request_ptr req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
               fuse_file_info* fi) {
    seen.op = "write", seen.ino = ino, seen.data.assign(buf, size), seen.off = off,
    seen.fh = fi->fh;
    req->reply_write(size);
  };
  t.forget_multi = [](request_ptr req, size_t n, const fuse_forget_data* f) {
    seen.op = "forget_multi", seen.forgets.assign(f, f + n);
    req->reply_none();
  };
  t.open = [](request_ptr req, fuse_ino_t ino, fuse_file_info* fi) {
    seen.op = "open", seen.ino = ino, seen.flags = fi->flags;
    fi->fh = 7;
    fi->keep_cache = 1;
    fi->noflush = 1;
    // Inode 99: answered with passthrough to backing id 5.
    if (ino == 99)
      req->reply_open_passthrough(*fi, 5);
    else
      req->reply_open(*fi);
  };
  t.setattr = [](request_ptr req, fuse_ino_t ino, const struct stat* st, int to_set,
                 fuse_file_info* fi) {
    seen.op = "setattr", seen.ino = ino, seen.to_set = to_set,
    seen.count = static_cast<std::uint64_t>(st->st_size);
    seen.fh = fi ? fi->fh : 0;
    req->reply_err(EROFS);
  };
  t.refuse = [](request_ptr req) {
    seen.op = "refuse";
    req->reply_err(EROFS);
  };
  return t;
}

// A request as /dev/fuse delivers it: header, the op's struct, then the payload.
std::vector<char> request_bytes(std::uint32_t opcode, std::uint64_t unique, std::uint64_t nodeid,
                                const void* op_in, std::size_t op_in_len,
                                const std::string& payload = {}) {
  fuse_in_header h;
  std::memset(&h, 0, sizeof h);
  h.len = static_cast<std::uint32_t>(sizeof h + op_in_len + payload.size());
  h.opcode = opcode;
  h.unique = unique;
  h.nodeid = nodeid;
  h.uid = 1000;
  std::vector<char> buf(h.len);
  std::memcpy(buf.data(), &h, sizeof h);
  if (op_in_len) std::memcpy(buf.data() + sizeof h, op_in, op_in_len);
  if (!payload.empty())
    std::memcpy(buf.data() + sizeof h + op_in_len, payload.data(), payload.size());
  return buf;
}

struct fixture {
  fixture() {
    seen = seen_t{};
    filesystem = std::make_unique<fs::filesystem>(
        fs::options{}, std::vector<std::shared_ptr<s3::object_client>>{mem},
        std::make_shared<cache::chunk_cache>(1 << 20, 64 * 1024));
    s = std::make_unique<session>(*filesystem, pool, mount_options{});
    d = std::make_unique<dispatcher>(*s, stubs());
  }
  void feed(const std::vector<char>& buf) {
    request_parts parts;
    REQUIRE(split(buf, parts));
    d->handle(parts, sink);
  }
  std::shared_ptr<s3::memory_client> mem = std::make_shared<s3::memory_client>();
  std::unique_ptr<fs::filesystem> filesystem;
  reactor_pool pool{reactor_pool::options{1, false}};
  std::unique_ptr<session> s;
  std::unique_ptr<dispatcher> d;
  capture_sink sink;
};

template <class T>
T out_as(const std::string& p) {
  REQUIRE(p.size() == sizeof(T));
  T t;
  std::memcpy(&t, p.data(), sizeof t);
  return t;
}

TEST_CASE("wire: LOOKUP passes the parent and name; the entry reply is a fuse_entry_out") {
  fixture f;
  f.feed(request_bytes(FUSE_LOOKUP, 11, 1, nullptr, 0, std::string("data.bin") + '\0'));
  CHECK(seen.op == "lookup");
  CHECK(seen.ino == 1);
  CHECK(seen.name == "data.bin");
  REQUIRE(f.sink.replies.size() == 1);
  CHECK(f.sink.replies[0].unique == 11);
  CHECK(f.sink.replies[0].error == 0);
  auto e = out_as<fuse_entry_out>(f.sink.replies[0].payload);
  CHECK(e.nodeid == 42);
  CHECK(e.attr.ino == 42);
  CHECK(e.attr.size == 12345);
  CHECK(e.attr.mode == (S_IFREG | 0444));
  CHECK(e.entry_valid == 1);
  CHECK(e.entry_valid_nsec == 500000000);
  CHECK(e.attr_valid == 1);
}

TEST_CASE("wire: a LOOKUP whose name lacks its NUL, or a READ without its struct, gets EINVAL") {
  fixture f;
  f.feed(request_bytes(FUSE_LOOKUP, 12, 1, nullptr, 0, "no-nul"));
  fuse_read_in short_in{};
  f.feed(request_bytes(FUSE_READ, 13, 5, &short_in, 8));
  CHECK(seen.op.empty());
  REQUIRE(f.sink.replies.size() == 2);
  CHECK(f.sink.replies[0].error == -EINVAL);
  CHECK(f.sink.replies[1].error == -EINVAL);
}

TEST_CASE("wire: READ passes fh, offset and size; the data reply gathers the pieces") {
  fixture f;
  fuse_read_in in{};
  in.fh = 99;
  in.offset = 1 << 20;
  in.size = 4096;
  f.feed(request_bytes(FUSE_READ, 14, 5, &in, sizeof in));
  CHECK(seen.op == "read");
  CHECK(seen.ino == 5);
  CHECK(seen.fh == 99);
  CHECK(seen.off == 1 << 20);
  CHECK(seen.count == 4096);
  CHECK(f.sink.replies.empty());  // answered later
  std::string a = "hello ", b = "world";
  iovec pieces[] = {{a.data(), a.size()}, {b.data(), b.size()}};
  seen.kept->reply_data(pieces);
  REQUIRE(f.sink.replies.size() == 1);
  CHECK(f.sink.replies[0].unique == 14);
  CHECK(f.sink.replies[0].payload == "hello world");
  seen.kept.reset();
  CHECK(f.sink.replies.size() == 1);  // no second reply
}

TEST_CASE("wire: a request dropped without a reply is answered EIO") {
  fixture f;
  fuse_read_in in{};
  f.feed(request_bytes(FUSE_READ, 15, 5, &in, sizeof in));
  seen.kept.reset();
  REQUIRE(f.sink.replies.size() == 1);
  CHECK(f.sink.replies[0].unique == 15);
  CHECK(f.sink.replies[0].error == -EIO);
}

TEST_CASE(
    "wire: INTERRUPT reaches the request that asked for it, and only while it is unanswered") {
  fixture f;
  fuse_read_in in{};
  f.feed(request_bytes(FUSE_READ, 16, 5, &in, sizeof in));
  int calls = 0;
  seen.kept->on_interrupt([&] { ++calls; });
  CHECK(f.d->watched() == 1);
  fuse_interrupt_in other{17};
  f.feed(request_bytes(FUSE_INTERRUPT, 100, 0, &other, sizeof other));
  CHECK(calls == 0);
  fuse_interrupt_in it{16};
  f.feed(request_bytes(FUSE_INTERRUPT, 101, 0, &it, sizeof it));
  CHECK(calls == 1);
  CHECK(f.sink.replies.empty());  // INTERRUPT itself gets no reply
  seen.kept->reply_err(EINTR);
  CHECK(f.d->watched() == 0);
  f.feed(request_bytes(FUSE_INTERRUPT, 102, 0, &it, sizeof it));
  CHECK(calls == 1);
  REQUIRE(f.sink.replies.size() == 1);
  CHECK(f.sink.replies[0].error == -EINTR);
}

TEST_CASE("wire: WRITE passes its bytes; the reply is a fuse_write_out") {
  fixture f;
  fuse_write_in in{};
  in.fh = 3;
  in.offset = 10;
  in.size = 5;
  f.feed(request_bytes(FUSE_WRITE, 18, 9, &in, sizeof in, "a.bin"));
  CHECK(seen.op == "write");
  CHECK(seen.data == "a.bin");
  CHECK(seen.off == 10);
  CHECK(seen.fh == 3);
  REQUIRE(f.sink.replies.size() == 1);
  CHECK(out_as<fuse_write_out>(f.sink.replies[0].payload).size == 5);
  // A WRITE claiming more bytes than it carries is refused.
  in.size = 50;
  f.feed(request_bytes(FUSE_WRITE, 19, 9, &in, sizeof in, "short"));
  REQUIRE(f.sink.replies.size() == 2);
  CHECK(f.sink.replies[1].error == -EINVAL);
}

TEST_CASE("wire: BATCH_FORGET passes every entry and is not answered") {
  fixture f;
  fuse_batch_forget_in in{2, 0};
  fuse_forget_one one[2] = {{7, 3}, {8, 1}};
  f.feed(request_bytes(FUSE_BATCH_FORGET, 20, 0, &in, sizeof in,
                       std::string(reinterpret_cast<char*>(one), sizeof one)));
  CHECK(seen.op == "forget_multi");
  REQUIRE(seen.forgets.size() == 2);
  CHECK(seen.forgets[0].ino == 7);
  CHECK(seen.forgets[0].nlookup == 3);
  CHECK(seen.forgets[1].ino == 8);
  CHECK(f.sink.replies.empty());
}

TEST_CASE("wire: OPEN passes the flags; the reply carries fh and the open flags") {
  fixture f;
  fuse_open_in in{};
  in.flags = O_RDONLY | O_NOATIME;
  f.feed(request_bytes(FUSE_OPEN, 21, 5, &in, sizeof in));
  CHECK(seen.op == "open");
  CHECK(seen.flags == (O_RDONLY | O_NOATIME));
  REQUIRE(f.sink.replies.size() == 1);
  auto o = out_as<fuse_open_out>(f.sink.replies[0].payload);
  CHECK(o.fh == 7);
  CHECK(o.open_flags == (FOPEN_KEEP_CACHE | FOPEN_NOFLUSH));
}

TEST_CASE(
    "wire: a passthrough OPEN reply carries the backing id and only the flags the kernel takes "
    "with it") {
  fixture f;
  fuse_open_in in{};
  in.flags = O_RDONLY;
  f.feed(request_bytes(FUSE_OPEN, 21, 99, &in, sizeof in));
  REQUIRE(f.sink.replies.size() == 1);
  auto o = out_as<fuse_open_out>(f.sink.replies[0].payload);
  CHECK(o.fh == 7);
  CHECK(o.open_flags ==
        (passthrough_abi::fopen_passthrough | FOPEN_NOFLUSH));  // no FOPEN_KEEP_CACHE
  CHECK(o.padding == 5);                                        // backing_id (7.40)
}

TEST_CASE(
    "wire: SETATTR maps the kernel's valid bits; write-type ops are refused; unknown ops get "
    "ENOSYS") {
  fixture f;
  fuse_setattr_in in{};
  in.valid = FATTR_SIZE | FATTR_FH | FATTR_MTIME;
  in.size = 0;
  in.fh = 77;
  f.feed(request_bytes(FUSE_SETATTR, 22, 9, &in, sizeof in));
  CHECK(seen.op == "setattr");
  CHECK(seen.to_set == (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME));
  CHECK(seen.fh == 77);
  f.feed(request_bytes(FUSE_MKDIR, 23, 1, nullptr, 0, std::string(8, '\0') + "d" + '\0'));
  CHECK(seen.op == "refuse");
  f.feed(request_bytes(FUSE_READLINK, 24, 5, nullptr, 0));
  REQUIRE(f.sink.replies.size() == 3);
  CHECK(f.sink.replies[0].error == -EROFS);
  CHECK(f.sink.replies[1].error == -EROFS);
  CHECK(f.sink.replies[2].unique == 24);
  CHECK(f.sink.replies[2].error == -ENOSYS);
}

TEST_CASE("wire: split refuses a buffer shorter than a header; INIT is left to the transport") {
  fixture f;
  std::vector<char> tiny(10);
  request_parts parts;
  CHECK_FALSE(split(tiny, parts));
  fuse_init_in in{};
  auto buf = request_bytes(FUSE_INIT, 1, 0, &in, sizeof in);
  REQUIRE(split(buf, parts));
  CHECK(parts.op_in.size() == sizeof(fuse_init_in));
  CHECK_FALSE(f.d->handle(parts, f.sink));
  CHECK(f.sink.replies.empty());
}

TEST_CASE("wire: the INIT reply asks for FUSE over io_uring only when wanted and offered") {
  mount_options o;
  o.max_read = 1 << 20;
  fuse_init_in in{};
  in.major = 7;
  in.minor = 44;
  in.max_readahead = 1 << 20;
  in.flags =
      FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_INIT_EXT | FUSE_SPLICE_READ;
  in.flags2 = static_cast<std::uint32_t>(fuse_over_io_uring_flag >> 32);
  auto out = init_reply(in, sizeof in, o, true);
  CHECK(out.major == 7);
  CHECK(out.minor == 42);
  CHECK((out.flags & FUSE_ASYNC_READ));
  CHECK((out.flags & FUSE_DO_READDIRPLUS));
  CHECK_FALSE((out.flags & FUSE_SPLICE_READ));
  CHECK_FALSE((out.flags & FUSE_ATOMIC_O_TRUNC));  // not offered by this kernel
  CHECK(out.flags2 == (1u << 9));
  CHECK(out.max_pages == 256);
  CHECK(out.max_readahead == o.max_readahead);  // not the kernel's 1 MiB: sysfs raised it
  CHECK(init_reply(in, sizeof in, o, false).flags2 == 0);
  in.flags2 = 0;  // a kernel without it
  CHECK(init_reply(in, sizeof in, o, true).flags2 == 0);
  in.minor = 38;
  CHECK(init_reply(in, sizeof in, o, true).minor == 38);
}

TEST_CASE(
    "wire: the INIT reply asks for FUSE passthrough, with max_stack_depth 1, only when on and "
    "offered") {
  mount_options o;
  fuse_init_in in{};
  in.major = 7;
  in.minor = 44;
  in.flags = FUSE_ASYNC_READ | FUSE_INIT_EXT;
  in.flags2 = static_cast<std::uint32_t>(passthrough_abi::init_flag >> 32);
  auto off = init_reply(in, sizeof in, o, false);  // passthrough_pool 0: off
  CHECK(off.flags2 == 0);
  CHECK(off.unused[0] == 0);
  o.passthrough_pool = 64 << 20;
  auto on = init_reply(in, sizeof in, o, false);
  CHECK(on.flags2 == (1u << 5));
  CHECK(on.unused[0] == 1);  // max_stack_depth (7.40)
  in.flags2 = 0;             // a kernel without it
  CHECK(init_reply(in, sizeof in, o, false).flags2 == 0);
  CHECK(init_reply(in, sizeof in, o, false).unused[0] == 0);
}

TEST_CASE("wire: the INIT reply asks for shared mmap of direct files only with direct I/O on") {
  mount_options o;
  fuse_init_in in{};
  in.major = 7;
  in.minor = 44;
  in.flags = FUSE_ASYNC_READ | FUSE_INIT_EXT;
  in.flags2 = static_cast<std::uint32_t>(direct_io_allow_mmap_flag >> 32);
  CHECK(init_reply(in, sizeof in, o, false).flags2 == 0);  // no direct I/O: not asked
  o.direct_io_above = 40 << 20;
  CHECK(init_reply(in, sizeof in, o, false).flags2 == (1u << 4));
  o.direct_io_above.reset();
  o.direct_io = true;
  CHECK(init_reply(in, sizeof in, o, false).flags2 == (1u << 4));
  in.flags2 = 0;  // a kernel before 6.6
  CHECK(init_reply(in, sizeof in, o, false).flags2 == 0);
}
}  // namespace test_wire
