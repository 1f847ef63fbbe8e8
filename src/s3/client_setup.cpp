#include "s3/client_setup.hpp"

#include <future>

#include <boost/asio/use_future.hpp>

namespace valkyrie::s3 {

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
  return opts;
}

}  // namespace valkyrie::s3
