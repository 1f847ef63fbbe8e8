// The filesystem on several reactors, as the daemon runs it: readers on different reactors at
// once, each reactor's S3 requests on its own client, read-ahead spread by executor_for.
#include <doctest/doctest.h>

#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "core/reactor_pool.hpp"
#include "counting_client.hpp"
#include "fs/filesystem.hpp"
#include "fs_fixture.hpp"
#include "helpers.hpp"
#include "wait.hpp"

using namespace valkyrie;
using namespace valkyrie::fs;
using valkyrie::fs::test_support::chunk;
using valkyrie::fs::test_support::pattern;

namespace {
constexpr unsigned reactors = 2;

struct pool_fixture {
  explicit pool_fixture(options o) {
    pool.start();
    std::vector<std::shared_ptr<s3::object_client>> per_reactor;
    std::vector<asio::any_io_executor> executors;
    for (unsigned i = 0; i < reactors; ++i) {
      clients.push_back(std::make_shared<test::counting_client>(mem));
      per_reactor.push_back(clients.back());
      executors.push_back(pool.executor(i));
    }
    cache = std::make_shared<cache::chunk_cache>(256 * std::uint64_t{chunk}, chunk, 4);
    fs = std::make_unique<filesystem>(o, per_reactor, cache, executors);
  }
  ~pool_fixture() {
    if (before_stop) before_stop();
    pool.stop();
  }
  // Runs a coroutine on reactor `r` and waits for it.
  template <class T>
  T on(unsigned r, awaitable<T> a) {
    return asio::co_spawn(pool.executor(r), std::move(a), asio::use_future).get();
  }
  std::vector<test::counting_client::get_record> all_gets() const {
    std::vector<test::counting_client::get_record> out;
    for (auto& c : clients)
      for (auto& g : c->records()) out.push_back(g);
    return out;
  }

  reactor_pool pool{{reactors, false}};
  std::shared_ptr<s3::memory_client> mem = std::make_shared<s3::memory_client>();
  std::vector<std::shared_ptr<test::counting_client>> clients;
  std::shared_ptr<cache::chunk_cache> cache;
  std::unique_ptr<filesystem> fs;
  // Run first on destruction, while the reactors still exist.
  std::function<void()> before_stop;
};

// A background thread that runs nothing until open(): work handed to it cannot finish before
// whatever opens it, however the threads are scheduled. (With the pool's own background thread
// the check of a small order sometimes finished, and its completion was queued on the reactor,
// before the handler posted ahead of it had left the reactor's thread-private queue: 1 run in 30.)
struct gated_background {
  gated_background() = default;
  gated_background(const gated_background&) = delete;
  ~gated_background() { close(); }
  void open() {
    std::call_once(opened, [this] { gate.set_value(); });
  }
  asio::any_io_executor executor() { return ctx.get_executor(); }
  // Runs what was handed over to the end and joins the thread. Before the reactors go: a job's
  // last steps (co_spawn's work guard on the reactor it answered) run on this thread after the
  // reactor has resumed the waiting coroutine, and must not find that reactor destroyed (as the
  // reactor pool joins its own background thread first).
  void close() {
    open();
    guard.reset();
    if (thread.joinable()) thread.join();
  }

  asio::io_context ctx{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard = asio::make_work_guard(ctx);
  std::promise<void> gate;
  std::once_flag opened;
  std::thread thread{[f = gate.get_future(), this]() mutable {  // (last: the rest is ready)
    f.wait();
    ctx.run();
  }};
};

// Installs `text` as a live order on the calling reactor, with a handler queued behind this
// coroutine on the same reactor: {the order's keys (0: refused), whether the handler ran before
// set_order returned}.
// `then` runs in that handler.
awaitable<std::pair<std::size_t, bool>> set_order_beside_other_work(
    filesystem* fs, std::string text, std::function<void()> then = {}) {
  // (shared: when set_order does not suspend, the handler runs after this frame is gone; named:
  // a closure that owns something is no temporary of an expression with a co_await in it)
  auto here = co_await asio::this_coro::executor;
  auto other_ran = std::make_shared<bool>(false);
  auto mark = [other_ran, then] {
    *other_ran = true;
    if (then) then();
  };
  asio::post(here, std::move(mark));
  auto u = co_await fs->set_order(std::move(text), "hint");
  co_return std::pair<std::size_t, bool>{u ? u->keys : 0, *other_ran};
}

// Opens `key` and reads it whole in `piece`-byte reads (not chunk-aligned), on the calling
// reactor.
awaitable<std::string> read_whole(filesystem* fs, std::string key, std::size_t piece) {
  auto a = co_await fs->lookup(root_ino, key);
  if (!a) co_return "lookup failed";
  auto f = co_await fs->open(a->ino);
  if (!f) co_return "open failed";
  std::string out;
  for (std::uint64_t off = 0; off < (*f)->size; off += piece) {
    auto r = co_await fs->read(*f, off, piece);
    if (!r) co_return "read failed: " + r.error().message();
    for (auto& s : r->slices) out.append(s.data(), s.size());
  }
  fs->release(*f);
  co_return out;
}
}  // namespace

TEST_CASE(
    "readers on two reactors at once: exact bytes, one GET per chunk, each reactor on its own "
    "client") {
  options o;
  o.max_readahead_chunks = 4;
  o.lookahead_files = 0;
  o.cold_read_direct_max = 0;
  pool_fixture f(o);
  std::vector<std::string> data;
  for (int i = 0; i < 3; ++i) {
    data.push_back(
        pattern(10 * std::uint64_t{chunk} + 1234 * static_cast<std::uint64_t>(i + 1), 30 + i));
    f.mem->put("file" + std::to_string(i), data.back());
  }
  // Eight readers: reactor r % 2, file r % 3, so every file is read from both reactors at once.
  std::vector<std::future<std::string>> readers;
  for (unsigned r = 0; r < 8; ++r)
    readers.push_back(
        asio::co_spawn(f.pool.executor(r % reactors),
                       read_whole(f.fs.get(), "file" + std::to_string(r % 3), 100000 + 777 * r),
                       asio::use_future));
  for (unsigned r = 0; r < 8; ++r) {
    CAPTURE(r);
    CHECK(readers[r].get() == data[r % 3]);
  }
  // Read-ahead may still be landing: wait until every request has been answered.
  test::wait_until([&] { return f.clients[0]->in_flight() == 0 && f.clients[1]->in_flight() == 0; },
                   "every GET answered");
  auto gets = f.all_gets();
  std::map<std::pair<std::string, std::uint64_t>, unsigned> by_range;
  for (auto& g : gets) ++by_range[{g.key, g.offset}];
  std::size_t chunks = 0;
  for (int i = 0; i < 3; ++i) chunks += (data[i].size() + chunk - 1) / chunk;
  CHECK(by_range.size() == chunks);  // every chunk fetched...
  for (auto& [range, n] : by_range) {
    CAPTURE(range.first);
    CAPTURE(range.second);
    CHECK(n == 1);  // ...once, however many readers wanted it
    CHECK(range.second % chunk == 0);
  }
  // The GETs a reactor sent went through that reactor's client, and some went from each.
  for (unsigned i = 0; i < reactors; ++i) {
    auto mine = f.clients[i]->records();
    CHECK(!mine.empty());
    for (auto& g : mine) CHECK(g.reactor == static_cast<int>(i));
  }
}

TEST_CASE(
    "chunks fetched ahead of readers are spread over the reactors, small files' only chunks too") {
  options o;
  o.lookahead_files = 32;
  o.cold_read_direct_max = 0;
  pool_fixture f(o);
  const std::string w1 = pattern(8 * std::uint64_t{chunk}, 41);
  f.mem->put("w1", w1);
  // Small files are one chunk each, all chunk 0: spread by the chunk's identity, not its index
  // (by index every one went to reactor 0's connections while the others idled).
  std::vector<std::string> keys{"w1"};
  std::vector<std::string> smalls;
  for (int i = 0; i < 16; ++i) {
    keys.push_back("s" + std::to_string(i));
    smalls.push_back(pattern(1000 + i, 50 + i));
    f.mem->put(keys.back(), smalls.back());
  }
  // A warm-up started on reactor 0 (as the daemon's manifest warm-up is).
  f.on(0, f.fs->warm_up(keys));
  test::wait_until(
      [&] {
        return f.all_gets().size() == 8 + 16 &&
               f.clients[0]->in_flight() + f.clients[1]->in_flight() == 0;
      },
      "every chunk of the warm-up fetched");
  std::map<int, int> big_by_reactor, small_by_reactor;
  for (auto& g : f.all_gets()) ++(g.key == "w1" ? big_by_reactor : small_by_reactor)[g.reactor];
  for (int r = 0; r < static_cast<int>(reactors); ++r) {
    CAPTURE(r);
    CHECK(big_by_reactor[r] > 0);
    CHECK(small_by_reactor[r] > 0);
  }
  // Read from the other reactor: all there, no GET, exact.
  auto before = f.all_gets().size();
  CHECK(f.on(1, read_whole(f.fs.get(), "w1", 65536)) == w1);
  for (int i = 0; i < 16; ++i)
    CHECK(f.on(1, read_whole(f.fs.get(), keys[i + 1], 65536)) == smalls[i]);
  CHECK(f.all_gets().size() == before);
}

TEST_CASE("a live order is checked against the listing in the background: its reactor goes on") {
  options o;
  auto known = std::make_shared<std::map<std::string, s3::object_info>>();
  s3::object_info info;
  info.size = 100;
  info.etag = "\"e\"";
  std::string text;
  for (int i = 0; i < 2000; ++i) {
    std::string key = "img/" + std::to_string(i) + ".jpg";
    info.key = key;
    (*known)[key] = info;
    text = key + "\n" + text;  // the listing's order reversed
  }
  o.known_objects = known;
  o.lookahead_files = 0;

  SUBCASE("with a background thread: other work runs on the reactor meanwhile") {
    gated_background background;  // opened by the handler behind set_order
    o.background = background.executor();
    pool_fixture f(o);
    f.before_stop = [&background] { background.close(); };
    auto [keys, other_ran] = f.on(
        0, set_order_beside_other_work(f.fs.get(), text, [&background] { background.open(); }));
    CHECK(keys == 2000);
    CHECK(other_ran);
    REQUIRE(f.fs->order());
    CHECK(f.fs->order()->predictor->first(1).front() == "img/1999.jpg");
  }
  SUBCASE("without one (unit tests, tools): checked on the reactor, the same result") {
    pool_fixture f(o);  // (o.background empty)
    auto [keys, other_ran] = f.on(0, set_order_beside_other_work(f.fs.get(), text));
    CHECK(keys == 2000);
    CHECK_FALSE(other_ran);  // (what the background thread is there to avoid)
    REQUIRE(f.fs->order());
  }
}
