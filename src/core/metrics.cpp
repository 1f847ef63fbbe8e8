#include "core/metrics.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace valkyrie::metrics {

unsigned cell_index() noexcept {
  static std::atomic<unsigned> next{0};
  thread_local unsigned mine = next.fetch_add(1, std::memory_order_relaxed) % cell_count;
  return mine;
}

std::uint64_t counter::value() const noexcept {
  std::uint64_t total = 0;
  for (auto& c : cells_) total += c.v.load(std::memory_order_relaxed);
  return total;
}

std::int64_t gauge::value() const noexcept {
  std::int64_t total = 0;
  for (auto& c : cells_) total += c.v.load(std::memory_order_relaxed);
  return total;
}

histogram::histogram(std::vector<double> bounds, double scale)
    : bounds_(std::move(bounds)), scale_(scale), cells_(new cell[cell_count]) {
  if (bounds_.size() > max_buckets) throw std::logic_error("too many histogram buckets");
  for (double b : bounds_) raw_bounds_.push_back(static_cast<std::uint64_t>(std::llround(b / scale_)));
}

void histogram::observe(std::uint64_t raw) noexcept {
  std::size_t i = 0;
  while (i < raw_bounds_.size() && raw > raw_bounds_[i]) ++i;
  cell& c = cells_[cell_index()];
  c.buckets[i].fetch_add(1, std::memory_order_relaxed);
  c.sum.fetch_add(raw, std::memory_order_relaxed);
}

histogram::snapshot histogram::read() const {
  snapshot s;
  s.bounds = bounds_;
  std::vector<std::uint64_t> per(bounds_.size() + 1, 0);
  std::uint64_t sum = 0;
  for (unsigned i = 0; i < cell_count; ++i) {
    for (std::size_t b = 0; b < per.size(); ++b) per[b] += cells_[i].buckets[b].load(std::memory_order_relaxed);
    sum += cells_[i].sum.load(std::memory_order_relaxed);
  }
  std::uint64_t running = 0;
  for (auto n : per) s.cumulative.push_back(running += n);
  s.count = running;
  s.sum = static_cast<double>(sum) * scale_;
  return s;
}

std::vector<double> latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,   0.5,     1,      2.5,   5,      10,    30,   60};
}

std::vector<double> size_buckets() {
  std::vector<double> b;
  for (double v = 4096; v <= 256.0 * 1024 * 1024; v *= 4) b.push_back(v);
  return b;
}

double timer::stop() noexcept {
  if (!h_) return 0;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
  h_->observe(static_cast<std::uint64_t>(ns));
  h_ = nullptr;
  return static_cast<double>(ns) * 1e-9;
}

registry& registry::global() {
  static registry r;
  return r;
}

registry::child& registry::find_or_add(const std::string& name, const std::string& help, type t,
                                       const labels& l, bool* added) {
  auto [it, fresh] = families_.try_emplace(name);
  family& f = it->second;
  if (fresh) {
    f.help = help;
    f.t = t;
  } else if (f.t != t) {
    throw std::logic_error("metric " + name + " registered with two types");
  }
  for (auto& c : f.children)
    if (c->l == l) {
      *added = false;
      return *c;
    }
  f.children.push_back(std::make_unique<child>());
  f.children.back()->l = l;
  *added = true;
  return *f.children.back();
}

counter& registry::get_counter(const std::string& name, const std::string& help, const labels& l, double scale) {
  std::lock_guard lock(mu_);
  bool added = false;
  auto& c = find_or_add(name, help, type::counter, l, &added);
  if (added) {
    c.c = std::make_unique<counter>();
    c.scale = scale;
  }
  return *c.c;
}

gauge& registry::get_gauge(const std::string& name, const std::string& help, const labels& l) {
  std::lock_guard lock(mu_);
  bool added = false;
  auto& c = find_or_add(name, help, type::gauge, l, &added);
  if (added) c.g = std::make_unique<gauge>();
  return *c.g;
}

histogram& registry::get_histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                                   double scale, const labels& l) {
  std::lock_guard lock(mu_);
  bool added = false;
  auto& c = find_or_add(name, help, type::histogram, l, &added);
  if (added) c.h = std::make_unique<histogram>(std::move(bounds), scale);
  return *c.h;
}

void registry::computed_gauge(const std::string& name, const std::string& help, std::function<double()> f) {
  std::lock_guard lock(mu_);
  bool added = false;
  auto& c = find_or_add(name, help, type::computed, {}, &added);
  c.f = std::move(f);
}

namespace {
std::string escape_label(const std::string& v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '"') out += "\\\"";
    else if (ch == '\n') out += "\\n";
    else out += ch;
  }
  return out;
}

std::string label_text(const labels& l, const char* extra_key = nullptr, const std::string& extra_value = {}) {
  if (l.empty() && !extra_key) return "";
  std::string out = "{";
  for (auto& [k, v] : l) {
    if (out.size() > 1) out += ',';
    out += k + "=\"" + escape_label(v) + "\"";
  }
  if (extra_key) {
    if (out.size() > 1) out += ',';
    out += std::string(extra_key) + "=\"" + extra_value + "\"";
  }
  return out + "}";
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
  return std::string(buf, r.ptr);
}
}  // namespace

std::string registry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  out.reserve(64 * 1024);
  for (auto& [name, f] : families_) {
    static const char* type_names[] = {"counter", "gauge", "histogram", "gauge"};
    out += "# HELP " + name + " " + f.help + "\n";
    out += "# TYPE " + name + " " + type_names[static_cast<int>(f.t)] + "\n";
    for (auto& c : f.children) {
      switch (f.t) {
        case type::counter:
          out += name + label_text(c->l) + " " +
                 (c->scale == 1 ? std::to_string(c->c->value()) : number(static_cast<double>(c->c->value()) * c->scale)) +
                 "\n";
          break;
        case type::gauge: out += name + label_text(c->l) + " " + std::to_string(c->g->value()) + "\n"; break;
        case type::computed: out += name + label_text(c->l) + " " + number(c->f()) + "\n"; break;
        case type::histogram: {
          auto s = c->h->read();
          for (std::size_t i = 0; i < s.bounds.size(); ++i)
            out += name + "_bucket" + label_text(c->l, "le", number(s.bounds[i])) + " " +
                   std::to_string(s.cumulative[i]) + "\n";
          out += name + "_bucket" + label_text(c->l, "le", "+Inf") + " " + std::to_string(s.count) + "\n";
          out += name + "_sum" + label_text(c->l) + " " + number(s.sum) + "\n";
          out += name + "_count" + label_text(c->l) + " " + std::to_string(s.count) + "\n";
          break;
        }
      }
    }
  }
  return out;
}

}  // namespace valkyrie::metrics
