#include "fuse/uring_transport.hpp"

#include <liburing.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/huge_region.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "fuse/passthrough_abi.hpp"
#include "fuse/session.hpp"
#include "fuse/uring_abi.hpp"

namespace valkyrie::fuse {

static_assert(uring_abi::init_flag == fuse_over_io_uring_flag);

namespace {
// Requests taken by the own decoder, by where they came from.
metrics::counter& arrived(const char* via) {
  return metrics::registry::global().get_counter(
      "valkyrie_fuse_transport_requests_total",
      "FUSE requests read by the io_uring transport, by channel "
      "(ring: FUSE over io_uring; dev_fuse: /dev/fuse)",
      {{"channel", via}});
}
metrics::counter& ring_requests = arrived("ring");
metrics::counter& dev_requests = arrived("dev_fuse");
}  // namespace

unsigned possible_cpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string text;
  std::getline(in, text);
  unsigned highest = 0;
  std::stringstream ranges(text);
  std::string range;
  while (std::getline(ranges, range, ',')) {
    auto dash = range.find('-');
    try {
      highest = std::max(highest, static_cast<unsigned>(std::stoul(
                                      dash == std::string::npos ? range : range.substr(dash + 1))));
    } catch (const std::exception&) {
    }
  }
  return highest + 1;
}

bool kernel_offers_io_uring() {
  std::ifstream in("/sys/module/fuse/parameters/enable_uring");
  std::string v;
  return (in >> v) && (v == "Y" || v == "1");
}

// Replies to requests read from /dev/fuse: one writev of the header and the pieces.
class uring_transport::dev_sink final : public reply_sink {
 public:
  explicit dev_sink(int fd) : fd_(::dup(fd)) {}
  ~dev_sink() override { ::close(fd_); }
  int send(std::uint64_t unique, int error, std::span<const iovec> payload) override {
    fuse_out_header out{};
    std::vector<iovec> iov;
    iov.reserve(payload.size() + 1);
    iov.push_back({&out, sizeof out});
    std::size_t len = sizeof out;
    for (auto& p : payload) {
      iov.push_back(p);
      len += p.iov_len;
    }
    out.len = static_cast<std::uint32_t>(len);
    out.error = error;
    out.unique = unique;
    ssize_t n = ::writev(fd_, iov.data(), static_cast<int>(iov.size()));
    return n < 0 ? -errno : 0;
  }

 private:
  int fd_;
};

// One reactor's ring and the entries it registered (for the queues it serves).
struct uring_transport::ring {
  struct entry final : reply_sink {
    ring* owner = nullptr;
    std::uint16_t qid = 0;
    uring_abi::req_header* header = nullptr;
    char* payload = nullptr;
    iovec iov[2];
    std::uint64_t commit_id = 0;
    std::uint32_t last_cmd = uring_abi::cmd_register;
    int send(std::uint64_t unique, int error, std::span<const iovec> pieces) override {
      return owner->reply(*this, unique, error, pieces);
    }
  };

  ring(uring_transport& t, unsigned reactor) : transport(t), reactor(reactor) {}
  ~ring() {
    exit();
  }

  // Before the INIT reply (on the reactor that read INIT): everything but the registration,
  // which the ring's reactor submits once the kernel has the reply.
  std::string setup(const std::vector<std::uint16_t>& qids, unsigned per_queue,
                    std::size_t payload_size) {
    const std::size_t header_size = 4096, payload_span = (payload_size + 4095) / 4096 * 4096;
    std::size_t count = qids.size() * per_queue;
    // The payloads first, from a 2 MiB boundary, in transparent huge pages; the headers after
    // them. Every read reply is copied into a payload and out of it again by the kernel, page
    // by page: in 4 KiB pages each page costs a TLB miss (and in a VM a walk of the host's
    // tables) on both copies, as the cache arena's did (cache/arena_memory.cpp).
    auto region = huge_region::reserve(count * (header_size + payload_span));
    if (!region) return "cannot map ring buffers: " + region.error().message();
    memory = std::move(*region);
    char* payloads = memory.data();
    char* headers = payloads + count * payload_span;
    memory.advise_huge(0, count * payload_span);  // (a refusal leaves 4 KiB pages)
    io_uring_params params{};
    params.flags = IORING_SETUP_SQE128;
    if (int rc = io_uring_queue_init_params(static_cast<unsigned>(count), &uring, &params); rc < 0)
      return std::string("io_uring_queue_init: ") + std::strerror(-rc);
    initialised = true;
    device = ::dup(transport.fd_);
    // Blocking: the reactor reads it as one io_uring operation (Asio's readv), which both waits
    // for the signal and consumes it; a non-blocking one took a poll and a read(2) per wake-up.
    efd = ::eventfd(0, EFD_CLOEXEC);
    if (device < 0 || efd < 0) return std::string("dup/eventfd: ") + std::strerror(errno);
    if (int rc = io_uring_register_eventfd(&uring, efd); rc < 0)
      return std::string("io_uring_register_eventfd: ") + std::strerror(-rc);
    for (std::size_t i = 0; i < count; ++i) {
      auto e = std::make_unique<entry>();
      e->owner = this;
      e->qid = qids[i / per_queue];
      e->header = reinterpret_cast<uring_abi::req_header*>(headers + i * header_size);
      e->payload = payloads + i * payload_span;
      e->iov[0] = {e->header, sizeof(uring_abi::req_header)};
      e->iov[1] = {e->payload, payload_span};
      prepare(*e);
      entries.push_back(std::move(e));
    }
    live = static_cast<unsigned>(entries.size());
    payload_capacity = payload_span;
    return {};
  }

  // An SQE for the entry's next command (its last one again after EAGAIN).
  void prepare(entry& e) {
    io_uring_sqe* sqe = io_uring_get_sqe(&uring);
    if (!sqe) {  // full: hand what is there to the kernel first
      io_uring_submit(&uring);
      sqe = io_uring_get_sqe(&uring);
    }
    std::memset(sqe, 0, 128);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = device;
    sqe->cmd_op = e.last_cmd;
    sqe->user_data = reinterpret_cast<std::uint64_t>(&e);
    auto* cmd = reinterpret_cast<uring_abi::cmd_req*>(sqe->cmd);
    cmd->qid = e.qid;
    if (e.last_cmd == uring_abi::cmd_register) {
      sqe->addr = reinterpret_cast<std::uint64_t>(e.iov);
      sqe->len = 2;
    } else {
      cmd->commit_id = e.commit_id;
    }
  }

  int reply(entry& e, std::uint64_t unique, int error, std::span<const iovec> pieces) {
    if (dead) return -ENOTCONN;
    std::size_t n = 0;
    for (auto& p : pieces) {
      if (n + p.iov_len > payload_capacity) {
        error = -EIO;
        n = 0;
        break;
      }
      std::memcpy(e.payload + n, p.iov_base, p.iov_len);
      n += p.iov_len;
    }
    auto* out = reinterpret_cast<fuse_out_header*>(e.header->in_out);
    out->len = static_cast<std::uint32_t>(sizeof(fuse_out_header) + n);
    out->error = error;
    out->unique = unique;
    e.header->ring_ent_in_out.payload_sz = static_cast<std::uint32_t>(n);
    if (reactor_pool::current() == static_cast<int>(reactor)) {
      commit(e);
    } else {
      transport.session_.pool().post(reactor, [this, &e] { commit(e); });
    }
    return 0;
  }

  void commit(entry& e) {
    if (dead) return;
    e.last_cmd = uring_abi::cmd_commit_and_fetch;
    prepare(e);
    if (draining || flush_posted) return;  // submitted at the end of this turn
    flush_posted = true;
    transport.session_.pool().post(reactor, [this] {
      flush_posted = false;
      flush();
    });
  }

  void flush() {
    if (!dead && io_uring_sq_ready(&uring) > 0) io_uring_submit(&uring);
  }

  // The completions that are there: requests to dispatch, entries that ended.
  void drain() {
    draining = true;
    io_uring_cqe* cqe;
    while (!dead && io_uring_peek_cqe(&uring, &cqe) == 0) {
      auto* e = reinterpret_cast<entry*>(io_uring_cqe_get_data(cqe));
      int res = cqe->res;
      io_uring_cqe_seen(&uring, cqe);
      if (res == 0) {
        dispatch(*e);
      } else if (res == -EAGAIN || res == -EINTR) {
        prepare(*e);
      } else {
        --live;
        if (res != -ENOTCONN && res != -ECANCELED && res != -ECONNABORTED && !warned) {
          warned = true;
          log::event(
              "fuse", spdlog::level::warn, "a FUSE ring entry ended with an error",
              {{"error", std::string(std::strerror(-res))}, {"reactor", std::uint64_t{reactor}}});
        }
      }
    }
    draining = false;
    flush();
  }

  void dispatch(entry& e) {
    auto* h = reinterpret_cast<const fuse_in_header*>(e.header->in_out);
    e.commit_id = e.header->ring_ent_in_out.commit_id;
    ring_requests.add();
    request_parts parts;
    parts.header = h;
    parts.op_in = std::span<const char>(e.header->op_in,
                                        std::min(op_in_size(h->opcode), uring_abi::header_area));
    parts.payload = std::span<const char>(
        e.payload, std::min<std::size_t>(e.header->ring_ent_in_out.payload_sz, payload_capacity));
    if (!transport.dispatcher_.handle(parts, e)) e.send(h->unique, -ENOSYS, {});
  }

  // After answering, watch the ring for a while before sleeping again (--fuse-uring-poll): a
  // reader that goes straight on with its next request (stat after stat, 4 KiB read after read)
  // is then answered without a wake-up through the eventfd and the reactor's io_uring. The reader
  // runs on this reactor's CPU (its queue is that CPU's), so the wait yields the CPU between
  // looks. Bounded: each request found extends it by one period, never past 8 periods in all,
  // so the reactor's other work waits at most that long.
  void poll_briefly() {
    const auto period = transport.session_.options().uring_poll;
    if (period <= std::chrono::microseconds::zero()) return;
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const auto hard_stop = start + 8 * period;
    auto until = start + period;
    for (auto now = start; now < until && now < hard_stop && !dead; now = clock::now()) {
      if (io_uring_cq_ready(&uring) > 0) {
        drain();
        until = clock::now() + period;
      } else {
        sched_yield();
      }
    }
  }

  awaitable<void> completions() {
    asio::posix::stream_descriptor* ev = events.get();
    for (;;) {
      std::uint64_t count = 0;
      auto [ec, n] = co_await ev->async_read_some(asio::buffer(&count, sizeof count), use_tuple);
      if (ec || dead) break;
      drain();
      if (live == 0) break;
      poll_briefly();
    }
    log::get("fuse")->debug("ring of reactor {} ended", reactor);
  }

  // On the ring's reactor (or after the reactors stopped): the kernel cancels what waits.
  void exit() {
    dead = true;
    if (events) {
      boost::system::error_code ec;
      events->close(ec);  // also closes efd
      events.reset();
      efd = -1;
    }
    if (initialised) io_uring_queue_exit(&uring);
    initialised = false;
    if (efd >= 0) ::close(efd);
    efd = -1;
    if (device >= 0) ::close(device);
    device = -1;
  }

  uring_transport& transport;
  unsigned reactor;
  io_uring uring{};
  bool initialised = false;
  int device = -1, efd = -1;
  std::unique_ptr<asio::posix::stream_descriptor> events;
  std::vector<std::unique_ptr<entry>> entries;
  huge_region memory;  // the entries' payloads, then their headers
  std::size_t payload_capacity = 0;
  unsigned live = 0;
  bool dead = false, draining = false, flush_posted = false, warned = false;
};

uring_transport::uring_transport(session& s, int fd, bool want_rings,
                                 std::function<void()> loop_ended)
    : session_(s),
      fd_(fd),
      want_rings_(want_rings),
      loop_ended_(std::move(loop_ended)),
      dev_sink_(std::make_unique<dev_sink>(fd)),
      dispatcher_(s) {}

uring_transport::~uring_transport() {
  rings_.clear();
}

void uring_transport::start() {
  receivers_.assign(session_.pool().size(), nullptr);
  for (unsigned i = 0; i < session_.pool().size(); ++i)
    asio::co_spawn(session_.pool().executor(i), dev_loop(i), asio::detached);
}

void uring_transport::stop() {
  if (stopping_.exchange(true)) return;
  for (unsigned i = 0; i < receivers_.size(); ++i)
    session_.pool().post(i, [this, i] {
      if (receivers_[i]) {
        boost::system::error_code ec;
        receivers_[i]->close(ec);
      }
      std::lock_guard lock(rings_mu_);
      if (i < rings_.size() && rings_[i]) rings_[i]->exit();
    });
}

void uring_transport::on_init(const request_parts& r, reply_sink& sink) {
  fuse_init_in in{};
  std::memcpy(&in, r.op_in.data(), std::min(r.op_in.size(), sizeof in));
  const auto& o = session_.options();
  auto out = init_reply(in, r.op_in.size(), o, want_rings_);
  std::uint64_t agreed = (std::uint64_t{out.flags2} << 32) & uring_abi::init_flag;
  payload_size_ = std::max<std::uint32_t>(
      {FUSE_MIN_READ_BUFFER, out.max_write, std::uint32_t{out.max_pages} * 4096});
  // The rings are made before the kernel hears yes: once it has agreed, its requests wait
  // until every CPU's queue has an entry, so a ring that cannot be made must mean no.
  if (agreed && out.minor >= uring_abi::min_minor && !make_rings(payload_size_)) {
    agreed = 0;
    out.flags2 &= ~static_cast<std::uint32_t>(uring_abi::init_flag >> 32);
  }
  // Before the reply: the kernel may send the first OPEN to another reactor at once.
  const bool passthrough = (std::uint64_t{out.flags2} << 32) & passthrough_abi::init_flag;
  if (passthrough) session_.enable_passthrough();
  if ((std::uint64_t{out.flags2} << 32) & direct_io_allow_mmap_flag)
    session_.allow_direct_io_mmap();
  else if (o.direct_io_above)
    log::event("fuse", spdlog::level::info,
               "the kernel cannot map files opened for direct I/O shared (Linux >= 6.6): big "
               "files are read through the page cache",
               {{"protocol_minor", std::uint64_t{in.minor}}});
  if (o.passthrough_pool > 0)
    log::event(
        "fuse", passthrough || o.passthrough_auto ? spdlog::level::info : spdlog::level::warn,
        passthrough
            ? "FUSE passthrough on: whole cached objects are read by the kernel from backing files"
            : "the kernel did not offer FUSE passthrough (Linux >= 6.9): every read comes through "
              "the daemon",
        {{"protocol_minor", std::uint64_t{in.minor}}, {"pool_bytes", o.passthrough_pool}});
  iovec v{&out, sizeof out};
  if (int rc = sink.send(r.header->unique, 0, std::span<const iovec>(&v, 1)); rc < 0) {
    log::event("fuse", spdlog::level::err, "the INIT reply was refused",
               {{"error", std::string(std::strerror(-rc))}});
    return;
  }
  if (!want_rings_) return;
  if (!agreed || out.minor < uring_abi::min_minor) {
    log::event("fuse", spdlog::level::warn,
               "the kernel did not offer FUSE over io_uring: requests stay on /dev/fuse",
               {{"protocol_minor", std::uint64_t{in.minor}}});
    return;
  }
  start_rings();
}

bool uring_transport::make_rings(std::size_t payload_size) {
  unsigned reactors = session_.pool().size(), queues = possible_cpus();
  // Entries per queue: enough to overlap requests, bounded in memory (1 MiB payloads, mapped
  // lazily: an entry costs memory once a request of that size has used it).
  per_queue_ = std::clamp(64u / std::max(queues, 1u), 2u, 16u);
  queues_ = queues;
  std::vector<std::unique_ptr<ring>> made(reactors);
  for (unsigned r = 0; r < reactors; ++r) {
    std::vector<std::uint16_t> qids;
    for (unsigned q = r; q < queues; q += reactors) qids.push_back(static_cast<std::uint16_t>(q));
    if (qids.empty()) continue;
    made[r] = std::make_unique<ring>(*this, r);
    auto problem = made[r]->setup(qids, per_queue_, payload_size);
    if (!problem.empty()) {
      log::event(
          "fuse", spdlog::level::warn,
          "a FUSE ring could not be set up: FUSE over io_uring is off, requests stay on /dev/fuse",
          {{"reason", problem}, {"reactor", std::uint64_t{r}}});
      return false;  // `made` goes, and with it what was set up
    }
  }
  std::lock_guard lock(rings_mu_);
  rings_ = std::move(made);
  return true;
}

void uring_transport::start_rings() {
  unsigned reactors = session_.pool().size(), queues = queues_, per_queue = per_queue_;
  for (unsigned r = 0; r < reactors; ++r) {
    if (!rings_[r]) continue;
    session_.pool().post(r, [this, r, per_queue, queues] {
      auto& rg = *rings_[r];
      if (stopping_ || rg.dead) return;
      if (int rc = io_uring_submit(&rg.uring); rc < 0) {
        log::event("fuse", spdlog::level::err, "registering the FUSE ring entries failed",
                   {{"error", std::string(std::strerror(-rc))}, {"reactor", std::uint64_t{r}}});
        return;
      }
      rg.events =
          std::make_unique<asio::posix::stream_descriptor>(session_.pool().executor(r), rg.efd);
      asio::co_spawn(session_.pool().executor(r), rg.completions(), asio::detached);
      if (++rings_registered_ == std::min<unsigned>(session_.pool().size(), queues))
        log::event("fuse", spdlog::level::debug, "FUSE over io_uring: on",
                   {{"queues", std::uint64_t{queues}},
                    {"entries_per_queue", std::uint64_t{per_queue}},
                    {"rings", std::uint64_t{rings_registered_.load()}}});
    });
  }
}

awaitable<void> uring_transport::dev_loop(unsigned reactor) {
  auto ex = co_await asio::this_coro::executor;
  asio::posix::stream_descriptor readable(ex, ::dup(fd_));
  receivers_[reactor] = &readable;
  // At least the kernel's minimum and a WRITE of max_write (128 KiB) with its headers.
  std::vector<char> buf(256 * 1024 + 4096);
  bool done = stopping_;
  while (!done) {
    auto [ec] = co_await readable.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
    if (ec) break;
    for (;;) {
      ssize_t n = ::read(readable.native_handle(), buf.data(), buf.size());
      if (n < 0 && errno == EAGAIN) break;
      if (n < 0 && (errno == EINTR || errno == ENOENT)) continue;  // ENOENT: interrupted meanwhile
      if (n <= 0) {                                                // ENODEV: unmounted
        done = true;
        break;
      }
      request_parts parts;
      if (!split(std::span<const char>(buf.data(), static_cast<std::size_t>(n)), parts)) continue;
      dev_requests.add();
      if (parts.header->opcode == FUSE_INIT)
        on_init(parts, *dev_sink_);
      else if (parts.header->opcode == FUSE_DESTROY)
        dev_sink_->send(parts.header->unique, 0, {});
      else
        dispatcher_.handle(parts, *dev_sink_);
    }
  }
  receivers_[reactor] = nullptr;
  log::get("fuse")->debug("/dev/fuse loop of reactor {} ended", reactor);
  loop_ended_();
}

}  // namespace valkyrie::fuse
