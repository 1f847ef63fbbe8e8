#pragma once
// Checks a Chrome trace file written by core/trace: it parses (simdjson), is an array of events,
// every async begin ("b") has exactly one end ("e") with the same id, name and category and a
// later or equal timestamp, and returns the names seen. Shared by the unit test and the
// trace-check tool the mount test runs.
#include <map>
#include <set>
#include <string>

#include <simdjson.h>

namespace valkyrie::test {

struct trace_summary {
  std::string error;  // empty when the file is good
  std::size_t events = 0, spans = 0, instants = 0;
  std::set<std::string> names;
};

inline trace_summary check_trace(const std::string& path) {
  trace_summary out;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.load(path).get(doc)) {
    out.error = path + ": not JSON: " + simdjson::error_message(err);
    return out;
  }
  simdjson::dom::array events;
  if (doc.get_array().get(events)) {
    out.error = path + ": not a JSON array";
    return out;
  }
  struct open_span {
    std::string name, cat;
    std::int64_t ts;
  };
  std::map<std::int64_t, open_span> open;
  for (auto ev : events) {
    ++out.events;
    std::string_view name, cat, ph;
    std::int64_t ts = 0;
    if (ev["name"].get(name) || ev["cat"].get(cat) || ev["ph"].get(ph) || ev["ts"].get(ts) ||
        ev["pid"].get_int64().error() || ev["tid"].get_int64().error()) {
      out.error = path + ": event " + std::to_string(out.events) + " lacks name, cat, ph, ts, pid or tid";
      return out;
    }
    out.names.emplace(name);
    if (ph == "i") {
      ++out.instants;
      continue;
    }
    std::int64_t id = 0;
    if (ev["id"].get(id)) {
      out.error = path + ": span event without id";
      return out;
    }
    if (ph == "b") {
      if (!open.emplace(id, open_span{std::string(name), std::string(cat), ts}).second) {
        out.error = path + ": two begins with id " + std::to_string(id);
        return out;
      }
    } else if (ph == "e") {
      auto it = open.find(id);
      if (it == open.end() || it->second.name != name || it->second.cat != cat || ts < it->second.ts) {
        out.error = path + ": end without a matching begin (id " + std::to_string(id) + ")";
        return out;
      }
      open.erase(it);
      ++out.spans;
    } else {
      out.error = path + ": unexpected phase " + std::string(ph);
      return out;
    }
  }
  if (!open.empty()) out.error = path + ": " + std::to_string(open.size()) + " spans never end";
  return out;
}

}  // namespace valkyrie::test
