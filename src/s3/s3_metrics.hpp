#pragma once
// The S3 client's metrics (see docs/metrics.md), shared by every client of the process.
#include <string_view>

#include "core/metrics.hpp"

namespace valkyrie::s3 {

enum class s3_op { get, head, list, put, create_session, count };

struct s3_metrics {
  // Answers by operation and HTTP status ("error": no HTTP answer, e.g. reset or timeout).
  metrics::counter& requests(s3_op op, unsigned status);
  metrics::histogram* duration[static_cast<int>(s3_op::count)];    // attempt: sent -> body read
  metrics::histogram* first_byte[static_cast<int>(s3_op::count)];  // sent -> response header
  metrics::counter& retries(std::string_view reason);
  metrics::counter* bytes;               // object bytes received into caller memory
  metrics::gauge* in_flight;             // attempts on the wire
  metrics::gauge* connections;           // open connections (idle or busy)
  metrics::counter* connections_opened;
  metrics::counter* credential_refreshes_ok;
  metrics::counter* credential_refreshes_failed;
  metrics::gauge* outage;  // 1 during an outage (outage_monitor)
  metrics::counter* outages;
  metrics::counter* requests_gave_up;  // failed for their whole retry budget

  static s3_metrics& get();

 private:
  s3_metrics();
  static constexpr unsigned statuses[] = {200, 204, 206, 304, 400, 403, 404, 409, 412, 416, 429, 500, 502, 503, 504};
  static constexpr unsigned status_slots = std::size(statuses) + 2;  // + "other", "error"
  metrics::counter* requests_[static_cast<int>(s3_op::count)][status_slots];
  static constexpr const char* retry_reasons[] = {
      "slow_down",      "server_error",     "connection_reset", "truncated_body",  "timeout",
      "connect_failed", "stale_connection", "expired_token",    "expired_session", "other"};
  metrics::counter* retries_[std::size(retry_reasons)];
};

const char* op_name(s3_op op);

}  // namespace valkyrie::s3
