#include "s3/parallel_get.hpp"

#include <memory>

#include "core/errors.hpp"

namespace valkyrie::s3 {

awaitable<parallel_get_result> get_parts(
    object_client* client, std::string key, std::string etag, part_list parts,
    std::function<void(std::size_t, std::chrono::steady_clock::duration)> on_part) {
  struct state {
    std::size_t remaining = 0;
    parallel_get_result out;
    std::shared_ptr<asio::steady_timer> done;
  };
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<state>();
  st->done = std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
  st->remaining = parts.size();
  const auto started = std::chrono::steady_clock::now();
  for (auto& [at, piece] : parts) {
    asio::co_spawn(
        ex, client->get(key, at, piece, etag),
        [st, want = piece.size(), started, on_part](std::exception_ptr e, result<std::size_t> r) {
          auto& out = st->out;
          if (e || !r) {
            std::error_code ec = e ? make_error_code(errc::protocol_error) : r.error();
            if (!out.first_error) out.first_error = ec;
            if (!out.first_failure) out.first_failure = ec;
            if (ec == errc::not_found) out.not_found = true;
          } else if (*r != want) {
            ++out.short_parts;
            if (!out.first_failure) out.first_failure = make_error_code(errc::truncated_body);
          } else {
            out.bytes += *r;
            if (on_part) on_part(*r, std::chrono::steady_clock::now() - started);
          }
          if (--st->remaining == 0) st->done->cancel();
        });
  }
  if (!parts.empty()) co_await st->done->async_wait(use_tuple);
  co_return st->out;
}

}  // namespace valkyrie::s3
