#include "s3/express_session.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <pugixml.hpp>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "s3/beast_client.hpp"
#include "s3/time_format.hpp"

namespace valkyrie::s3 {

express_session::express_session(create_fn create, std::string bucket, session_timing timing,
                                 std::function<clock::time_point()> now)
    : create_(std::move(create)),
      bucket_(std::move(bucket)),
      timing_(timing),
      now_(std::move(now)) {}

unsigned express_session::create_count() const {
  std::lock_guard lock(mu_);
  return creates_;
}

unsigned express_session::wait_count() const {
  std::lock_guard lock(mu_);
  return waits_;
}

unsigned express_session::max_concurrent_creates() const {
  std::lock_guard lock(mu_);
  return max_concurrent_;
}

void express_session::invalidate(std::string_view session_token) {
  std::lock_guard lock(mu_);
  // Only the session the request used: a burst of 403s for one session makes one new session.
  if (current_ && current_->session_token == session_token) current_.reset();
}

void express_session::remove_waiter(std::uint64_t id) {
  std::lock_guard lock(mu_);
  std::erase_if(waiters_, [id](const waiter& w) { return w.id == id; });
}

awaitable<void> express_session::run_create(std::shared_ptr<express_session> self) {
  const auto started = self->now_();
  auto r = co_await self->create_();
  std::vector<waiter> wake;
  {
    std::lock_guard lock(self->mu_);
    --self->concurrent_;
    self->in_flight_ = false;
    if (r) {
      // Times count from when the request was sent (the server's clock may differ from ours; a
      // lifetime that is already over here is taken as clock skew, not as a dead session).
      auto lifetime = r->expiration ? *r->expiration - started : clock::duration::zero();
      if (lifetime <= clock::duration::zero()) {
        if (!self->warned_skew_)
          log::event("s3", spdlog::level::warn,
                     "S3 Express session expires before it was requested: clock skew? Assuming a "
                     "short lifetime",
                     {{"bucket", self->bucket_},
                      {"assumed_seconds",
                       static_cast<std::uint64_t>(self->timing_.skewed_lifetime.count())}});
        self->warned_skew_ = true;
        lifetime = self->timing_.skewed_lifetime;
      }
      auto margin = std::min<clock::duration>(
          std::chrono::duration_cast<clock::duration>(lifetime * (1 - self->timing_.stop_using_at)),
          self->timing_.max_margin);
      self->current_ = std::move(*r);
      self->refresh_at_ = started + std::chrono::duration_cast<clock::duration>(
                                        lifetime * self->timing_.refresh_at);
      self->stop_at_ = std::max(self->refresh_at_, started + lifetime - margin);
      self->last_error_ = {};
    } else {
      self->last_error_ = r.error();
      self->holdoff_until_ = self->now_() + self->timing_.failure_holdoff;
    }
    wake.swap(self->waiters_);
  }
  if (!r)
    log::limited("s3", spdlog::level::warn, "create-session", "S3 Express CreateSession failed",
                 {{"bucket", self->bucket_}, {"error", r.error().message()}});
  for (auto& w : wake) asio::post(w.ex, [t = w.timer] { t->cancel(); });
}

awaitable<result<credentials>> express_session::get() {
  auto ex = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + timing_.wait_timeout;
  for (;;) {
    const auto now = now_();
    bool start = false;
    std::error_code failed;
    std::optional<credentials> snapshot;
    std::shared_ptr<asio::steady_timer> timer;
    std::uint64_t id = 0;
    {
      std::lock_guard lock(mu_);
      if (current_ && now < stop_at_) {
        snapshot = current_;
        // Ahead of expiry: one CreateSession in the background, the current session meanwhile.
        start = now >= refresh_at_ && !in_flight_ && now >= holdoff_until_;
      } else if (!in_flight_ && now < holdoff_until_) {
        failed = last_error_ ? last_error_ : make_error_code(errc::access_denied);
      } else {
        start = !in_flight_;
        timer = std::make_shared<asio::steady_timer>(ex, deadline);
        id = ++next_waiter_;
        ++waits_;
        waiters_.push_back({id, ex, timer});
      }
      if (start) {
        in_flight_ = true;
        ++creates_;
        max_concurrent_ = std::max(max_concurrent_, ++concurrent_);
      }
    }
    if (failed) co_return failed;
    if (start) asio::co_spawn(ex, run_create(shared_from_this()), asio::detached);
    if (snapshot) co_return std::move(*snapshot);
    // Woken by run_create (cancel) or at the deadline; the entry goes whichever way this ends.
    struct remove_on_exit {
      express_session* self;
      std::uint64_t id;
      ~remove_on_exit() { self->remove_waiter(id); }
    } guard{this, id};
    co_await timer->async_wait(use_tuple);
    if (std::chrono::steady_clock::now() >= deadline) co_return make_error_code(errc::timeout);
  }
}

result<credentials> parse_create_session(std::string_view xml) {
  pugi::xml_document doc;
  if (!doc.load_buffer(xml.data(), xml.size())) return make_error_code(errc::protocol_error);
  auto c = doc.child("CreateSessionResult").child("Credentials");
  credentials out;
  out.access_key_id = c.child_value("AccessKeyId");
  out.secret_access_key = c.child_value("SecretAccessKey");
  out.session_token = c.child_value("SessionToken");
  // Without any of these the requests could not be signed (or would go unsigned).
  if (out.access_key_id.empty() || out.secret_access_key.empty() || out.session_token.empty())
    return make_error_code(errc::protocol_error);
  auto expiration = parse_iso8601(c.child_value("Expiration"));
  if (!expiration) return make_error_code(errc::protocol_error);
  out.expiration = *expiration;
  return out;
}

namespace {
awaitable<result<credentials>> create_with(client_options opts) {
  beast_client client(co_await asio::this_coro::executor, std::move(opts));
  co_return co_await client.create_session("ReadWrite");
}
}  // namespace

std::shared_ptr<express_session> make_express_session(const client_options& base,
                                                      std::optional<session_timing> given) {
  client_options opts = base;
  opts.session = nullptr;
  opts.max_connections = 1;
  // Short: the callers' own retries (or the origin standing in for a shared cache) persist.
  if (opts.retry.max_attempts == 0 || opts.retry.max_attempts > 2) opts.retry.max_attempts = 2;
  // Requests wait for a CreateSession about as long as for an answer of their own; one that
  // takes longer goes on in the background, for the requests after them.
  session_timing timing;
  timing.wait_timeout = opts.timeouts.connect + opts.timeouts.first_byte + opts.timeouts.stall;
  if (given) timing = *given;
  return std::make_shared<express_session>([opts]() { return create_with(opts); }, opts.ep.bucket,
                                           timing);
}

}  // namespace valkyrie::s3
