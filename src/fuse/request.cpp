#define FUSE_USE_VERSION 34
#include "fuse/request.hpp"

#include <fuse_lowlevel.h>

#include <cerrno>

#include <boost/asio/post.hpp>

#include "core/metrics.hpp"

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

op_timer::op_timer(op_id op) : op_(op), start_(std::chrono::steady_clock::now()) {
  fuse_metrics::get().in_flight->add();
}

void op_timer::done(int err) {
  if (!open_) return;
  open_ = false;
  auto& m = fuse_metrics::get();
  int i = static_cast<int>(op_);
  m.in_flight->sub();
  m.requests[i]->add();
  if (err) m.errors[i]->add();
  m.duration[i]->observe(
      static_cast<std::uint64_t>((std::chrono::steady_clock::now() - start_).count()));
}

void reply_err(op_timer& t, fuse_req_t req, int err) {
  t.done(err);
  fuse_reply_err(req, err);
}

std::shared_ptr<pending_request> pending_request::start(fuse_req_t req, asio::any_io_executor ex,
                                                        op_timer t) {
  auto p = std::make_shared<pending_request>(req, std::move(ex), std::move(t));
  // (Called at once, from here, if the INTERRUPT came first.)
  fuse_req_interrupt_func(req, &pending_request::on_interrupt, p.get());
  return p;
}

void pending_request::on_interrupt(fuse_req_t, void* data) {
  // Any reactor's thread, the request's lock held by libfuse: hand it over, nothing more.
  auto* self = static_cast<pending_request*>(data);
  asio::post(self->ex_, [keep = self->shared_from_this()] { keep->interrupted(); });
}

fuse_req_t pending_request::claim() {
  if (answered_) return nullptr;
  answered_ = true;
  fuse_req_interrupt_func(req_, nullptr, nullptr);  // waits for a callback in progress
  return req_;
}

void pending_request::interrupted() {
  if (answered_) return;
  answered_ = true;
  fuse_req_interrupt_func(req_, nullptr, nullptr);
  fuse_metrics::get().interrupted[static_cast<int>(timer_.op())]->add();
  reply_err(timer_, req_, EINTR);
}

}  // namespace valkyrie::fuse
