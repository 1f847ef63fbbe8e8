#include "s3/client_setup.hpp"

#include <future>

#include <boost/asio/use_future.hpp>

namespace valkyrie::s3 {

std::optional<express_mode> parse_express_mode(std::string_view text) {
  if (text == "auto") return express_mode::automatic;
  if (text == "on") return express_mode::on;
  if (text == "off") return express_mode::off;
  return std::nullopt;
}

result<client_options> prepare_client_options(const client_setup& setup) {
  auto ep = resolve_endpoint(setup.endpoint);
  if (!ep) return ep.error();
  client_options opts;
  opts.ep = *ep;
  if (opts.ep.tls) {
    auto tls = make_tls_context(setup.ca_bundle, setup.verify_tls);
    if (!tls) return tls.error();
    opts.tls = *tls;
  }
  asio::io_context ctx(1);
  auto fut = asio::co_spawn(ctx, resolve_credentials(setup.credentials), asio::use_future);
  ctx.run();
  auto provider = fut.get();
  if (!provider) return provider.error();
  opts.credentials = *provider;
  opts.max_connections = setup.max_connections;
  opts.timeouts = setup.timeouts;
  opts.retry = setup.retry;
  opts.stats = std::make_shared<client_stats>();
  opts.outage = std::make_shared<outage_monitor>();  // one for every copy: outages logged once
  const bool session =
      setup.express == express_mode::on ||
      (setup.express == express_mode::automatic && is_directory_bucket(opts.ep.bucket));
  if (session) opts.ep.signing_service = "s3express";
  // (Unsigned requests have no session: a directory bucket refuses them.)
  if (session && !setup.credentials.anonymous) opts.session = make_express_session(opts);
  return opts;
}

}  // namespace valkyrie::s3
