#pragma once
// The --shared-cache options (a shared cache tier in an S3-compatible bucket) and what start-up
// builds from them: kept apart from main.cpp, which only calls these three functions.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "cache/chunk_cache.hpp"
#include "core/reactor_pool.hpp"
#include "s3/client_setup.hpp"
#include "tier/shared_tier.hpp"

namespace valkyrie::cli {

struct shared_cache_flags {
  std::string url;  // s3://BUCKET[/PREFIX]
  std::string endpoint, region, profile, ca_bundle, key_file;
  std::string express_session = "auto";  // auto, on, off
  bool no_verify_tls = false, force_path_style = false;
};

void add_shared_cache_options(CLI::App& app, shared_cache_flags& flags);

struct shared_cache_setup {
  s3::client_options client;  // the cache bucket's, short timeouts, no retries
  tier::shared_options tier;
};

// Before the fork, after the origin's options are known: checks the flags (a usage error
// exits 2), reads the key file and resolves the cache bucket's credentials (exit 1 with a
// message). nullopt without --shared-cache.
std::optional<shared_cache_setup> prepare_shared_cache(const shared_cache_flags& flags,
                                                       const s3::client_options& origin,
                                                       unsigned max_connections);

// After the reactors exist: one client per reactor and the tier.
std::shared_ptr<tier::shared_tier> make_shared_cache(const shared_cache_setup& setup,
                                                     reactor_pool& pool,
                                                     std::shared_ptr<cache::chunk_cache> cache,
                                                     std::uint64_t write_back_bytes);

}  // namespace valkyrie::cli
