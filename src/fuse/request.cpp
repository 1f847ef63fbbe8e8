#include "fuse/request.hpp"

#include <boost/asio/post.hpp>

#include "core/metrics.hpp"
#include "fuse/session.hpp"

namespace valkyrie::fuse {
namespace {

constexpr const char* op_names[] = {
    "lookup", "forget",  "getattr", "opendir", "readdir",  "readdirplus", "releasedir", "open",
    "read",   "release", "statfs",  "access",  "getxattr", "listxattr",   "write",      "flush"};
constexpr int op_count = static_cast<int>(op_id::count);
static_assert(std::size(op_names) == op_count);

// Requests by op, errors, latency from arrival to reply, interrupts.
struct fuse_metrics {
  metrics::counter* requests[op_count];
  metrics::counter* errors[op_count];
  metrics::counter* interrupted[op_count];
  metrics::histogram* duration[op_count];
  metrics::gauge* in_flight;
  static fuse_metrics& get() {
    static fuse_metrics m = [] {
      fuse_metrics f;
      auto& r = metrics::registry::global();
      for (int i = 0; i < op_count; ++i) {
        metrics::labels l{{"op", op_names[i]}};
        f.requests[i] =
            &r.get_counter("valkyrie_fuse_requests_total",
                           "FUSE requests answered, by op (write: every write-type op)", l);
        f.errors[i] = &r.get_counter("valkyrie_fuse_errors_total",
                                     "FUSE requests answered with an error, by op", l);
        f.interrupted[i] = &r.get_counter(
            "valkyrie_fuse_interrupted_total",
            "FUSE requests answered EINTR because their caller was interrupted, by op", l);
        f.duration[i] = &r.get_histogram("valkyrie_fuse_request_duration_seconds",
                                         "Time from a FUSE request's arrival to its reply, by op",
                                         metrics::latency_buckets(), 1e-9, l);
      }
      f.in_flight = &r.get_gauge("valkyrie_fuse_requests_in_flight",
                                 "FUSE requests received and not yet answered");
      return f;
    }();
    return m;
  }
};

}  // namespace

request::request(session& s, op_id op, unsigned uid)
    : session_(s),
      op_(op),
      uid_(uid),
      start_(std::chrono::steady_clock::now()),
      session_alive_(s.alive()) {
  int r = reactor_pool::current();
  reactor_ = r >= 0 ? static_cast<unsigned>(r) : 0;
  fuse_metrics::get().in_flight->add();
}

// Derived destructors cannot send (their part is gone by now): a transport's destructor calls
// abandon() first. Here only the metrics are kept honest.
request::~request() {
  done(EIO);
}

asio::any_io_executor request::executor() const {
  return session_.pool().executor(reactor_);
}

void request::done(int err) {
  if (replied_) return;
  replied_ = true;
  auto& m = fuse_metrics::get();
  int i = static_cast<int>(op_);
  m.in_flight->sub();
  m.requests[i]->add();
  if (err) m.errors[i]->add();
  m.duration[i]->observe(
      static_cast<std::uint64_t>((std::chrono::steady_clock::now() - start_).count()));
}

void request::on_interrupt(std::function<void()> f) {
  hooked_ = true;
  hook_interrupt(std::move(f));
}

void request::unhook() {
  if (!hooked_) return;
  hooked_ = false;
  unhook_interrupt();
}

void request::abandon() {
  if (replied_) return;
  done(EIO);
  if (!session_alive_->load()) return;
  unhook();
  send_err(EIO);
}

void request::reply_err(int err) {
  unhook();
  done(err);
  send_err(err);
}
void request::reply_none() {
  unhook();
  done(0);
  send_none();
}
void request::reply_entry(const fuse_entry_param& e) {
  unhook();
  done(0);
  send_entry(e);
}
void request::reply_attr(const struct stat& st, double timeout) {
  unhook();
  done(0);
  send_attr(st, timeout);
}
bool request::reply_open(const fuse_file_info& fi) {
  unhook();
  done(0);
  return send_open(fi, -1) == 0;
}
bool request::reply_open_passthrough(const fuse_file_info& fi, int backing_id) {
  unhook();
  done(0);
  return send_open(fi, backing_id) == 0;
}
void request::reply_buf(const void* data, std::size_t size) {
  iovec one{const_cast<void*>(data), size};
  reply_data(std::span<const iovec>(&one, size ? 1 : 0));
}
void request::reply_data(std::span<const iovec> pieces) {
  unhook();
  done(0);
  send_data(pieces);
}
void request::reply_write(std::size_t count) {
  unhook();
  done(0);
  send_write(count);
}
void request::reply_statfs(const struct statvfs& st) {
  unhook();
  done(0);
  send_statfs(st);
}
void request::reply_xattr(std::size_t size) {
  unhook();
  done(0);
  send_xattr(size);
}

void request::reply_interrupted() {
  fuse_metrics::get().interrupted[static_cast<int>(op_)]->add();
  reply_err(EINTR);
}

pending_ptr pending_request::start(request_ptr req) {
  auto ex = req->executor();
  auto* r = req.get();
  auto p = std::make_shared<pending_request>(std::move(req));
  // Any thread, the transport's lock held: hand it over, nothing more. (Called at once, from
  // here, if the INTERRUPT came first.)
  r->on_interrupt([w = std::weak_ptr<pending_request>(p), ex] {
    asio::post(ex, [w] {
      if (auto self = w.lock()) self->interrupted();
    });
  });
  return p;
}

request* pending_request::claim() {
  if (answered_) return nullptr;
  answered_ = true;
  return req_.get();
}

void pending_request::interrupted() {
  if (answered_) return;
  answered_ = true;
  req_->reply_interrupted();
}

}  // namespace valkyrie::fuse
