#include "s3/s3_metrics.hpp"

#include <string>

namespace valkyrie::s3 {

const char* op_name(s3_op op) {
  switch (op) {
    case s3_op::get: return "GetObject";
    case s3_op::head: return "HeadObject";
    case s3_op::list: return "ListObjectsV2";
    case s3_op::put: return "PutObject";
    case s3_op::create_session: return "CreateSession";
    default: return "unknown";
  }
}

s3_metrics::s3_metrics() {
  auto& r = metrics::registry::global();
  // Every series exists from the start (at 0), so rates and absent() work from the first scrape.
  for (int o = 0; o < static_cast<int>(s3_op::count); ++o) {
    std::string op = op_name(static_cast<s3_op>(o));
    for (unsigned i = 0; i < status_slots; ++i) {
      std::string status = i < std::size(statuses) ? std::to_string(statuses[i]) : i == std::size(statuses) ? "other" : "error";
      requests_[o][i] = &r.get_counter("valkyrie_s3_requests_total",
                                       "S3 request attempts by operation and HTTP status (error: no HTTP answer)",
                                       {{"operation", op}, {"status", status}});
    }
    duration[o] = &r.get_histogram("valkyrie_s3_request_duration_seconds",
                                   "Time of one S3 request attempt, from sending to the whole answer read",
                                   metrics::latency_buckets(), 1e-9, {{"operation", op}});
    first_byte[o] = &r.get_histogram("valkyrie_s3_first_byte_seconds",
                                     "Time from sending an S3 request to its response header",
                                     metrics::latency_buckets(), 1e-9, {{"operation", op}});
  }
  for (std::size_t i = 0; i < std::size(retry_reasons); ++i)
    retries_[i] = &r.get_counter("valkyrie_s3_retries_total", "S3 requests sent again, by reason",
                                 {{"reason", retry_reasons[i]}});
  bytes = &r.get_counter("valkyrie_s3_received_bytes_total", "Object bytes received from S3 (GET bodies)");
  in_flight = &r.get_gauge("valkyrie_s3_requests_in_flight", "S3 request attempts on the wire now");
  connections = &r.get_gauge("valkyrie_s3_connections", "Open connections to S3 (busy or idle in a pool)");
  connections_opened = &r.get_counter("valkyrie_s3_connections_opened_total", "Connections to S3 opened");
  credential_refreshes_ok = &r.get_counter("valkyrie_credential_refreshes_total",
                                           "Credential fetches from their source (IMDS, ECS, process, ...)",
                                           {{"result", "ok"}});
  credential_refreshes_failed = &r.get_counter("valkyrie_credential_refreshes_total",
                                               "Credential fetches from their source (IMDS, ECS, process, ...)",
                                               {{"result", "error"}});
  outage = &r.get_gauge("valkyrie_s3_outage",
                        "1 while S3 requests have been failing for over a second, else 0");
  outages = &r.get_counter("valkyrie_s3_outages_total",
                           "Outages: S3 failing for over a second, until it answered");
  requests_gave_up = &r.get_counter(
      "valkyrie_s3_requests_gave_up_total",
      "S3 requests that failed for their whole retry budget (readers got ETIMEDOUT)");
}

s3_metrics& s3_metrics::get() {
  static s3_metrics m;
  return m;
}

metrics::counter& s3_metrics::requests(s3_op op, unsigned status) {
  unsigned slot = std::size(statuses) + 1;  // error
  if (status != 0) {
    slot = std::size(statuses);  // other
    for (unsigned i = 0; i < std::size(statuses); ++i)
      if (statuses[i] == status) slot = i;
  }
  return *requests_[static_cast<int>(op)][slot];
}

metrics::counter& s3_metrics::retries(std::string_view reason) {
  for (std::size_t i = 0; i < std::size(retry_reasons); ++i)
    if (reason == retry_reasons[i]) return *retries_[i];
  return *retries_[std::size(retry_reasons) - 1];
}

}  // namespace valkyrie::s3
