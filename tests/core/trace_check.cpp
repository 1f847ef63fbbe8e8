// trace-check [--require=NAME...] FILE...: exit 0 when every FILE is a well-formed, balanced
// trace and the files together contain an event named each NAME; prints what it found.
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "trace_check.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> files, required;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--require=", 0) == 0) required.push_back(a.substr(10));
    else files.push_back(a);
  }
  if (files.empty()) {
    std::fprintf(stderr, "usage: trace-check [--require=NAME...] FILE...\n");
    return 2;
  }
  std::set<std::string> names;
  for (auto& f : files) {
    auto s = valkyrie::test::check_trace(f);
    if (!s.error.empty()) {
      std::fprintf(stderr, "trace-check: %s\n", s.error.c_str());
      return 1;
    }
    std::printf("%s: %zu events, %zu spans, %zu instants\n", f.c_str(), s.events, s.spans, s.instants);
    names.insert(s.names.begin(), s.names.end());
  }
  int missing = 0;
  for (auto& r : required)
    if (!names.count(r)) {
      std::fprintf(stderr, "trace-check: no event named %s\n", r.c_str());
      ++missing;
    }
  return missing ? 1 : 0;
}
