#include "s3/parallel_list.hpp"

#include <algorithm>
#include <deque>
#include <limits>
#include <memory>

namespace valkyrie::s3 {
namespace {

// Positions: mixed-radix numbers over the code points from a little before where the page's
// first and last items diverge. Each position's radix is the character class seen there
// (digits, lower case, upper case, printable ASCII, or U+0020..U+D7FF), so numbered names carry
// like numbers ("file-000999" + 1000 = "file-001999"). Only an estimate of where keys lie; the
// pieces' correctness rests on string comparisons alone.
using u128 = unsigned __int128;
constexpr std::uint32_t printable_low = 0x20, printable_high = 0x7e, wide_high = 0xD7FF;
constexpr int context_chars = 8;  // positions kept before the divergence, for carries
constexpr int detail_chars = 4;   // positions kept from the divergence on

struct char_range {
  std::uint32_t low, high;
};
char_range class_of(std::uint32_t cp) {
  if (cp >= '0' && cp <= '9') return {'0', '9'};
  if (cp >= 'a' && cp <= 'z') return {'a', 'z'};
  if (cp >= 'A' && cp <= 'Z') return {'A', 'Z'};
  if (cp <= printable_high) return {printable_low, printable_high};
  return {printable_low, wide_high};
}

bool continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the common prefix of a and b, backed off to a character boundary.
std::size_t common_prefix(const std::string& a, const std::string& b) {
  std::size_t n = std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin();
  while (n > 0 && ((n < a.size() && continuation(a[n])) || (n < b.size() && continuation(b[n])))) --n;
  return n;
}

// The next code point of s at i (an invalid byte stands for itself); advances i.
std::uint32_t next_code_point(const std::string& s, std::size_t& i) {
  auto b0 = static_cast<unsigned char>(s[i]);
  int len = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
  if (len <= 1 || i + len > s.size()) {
    ++i;
    return b0;
  }
  std::uint32_t cp = b0 & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[i + k]);
    if (!continuation(c)) {
      ++i;
      return b0;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  i += len;
  return cp;
}

std::vector<std::uint32_t> code_points(const std::string& s, std::size_t from) {
  std::vector<std::uint32_t> out;
  for (std::size_t i = from; i < s.size();) out.push_back(next_code_point(s, i));
  return out;
}

std::string encode(const std::vector<std::uint32_t>& cps) {
  std::string out;
  for (std::uint32_t cp : cps) {  // all below U+D800: one to three bytes
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

// A piece of the key space: items after `after` (or from `token`) up to and including `end`
// ("" = the end of the prefix).
struct piece {
  std::string after, token, end;
};

struct list_state {
  list_state(object_client& c, list_request r, list_sink s, parallel_list_options o, parallel_list_stats* st,
             asio::any_io_executor ex)
      : client(c), base(std::move(r)), sink(std::move(s)), opts(o), stats(st), wake(ex), done(ex) {
    wake.expires_at(asio::steady_timer::time_point::max());
    done.expires_at(asio::steady_timer::time_point::max());
  }
  object_client& client;
  list_request base;
  list_sink sink;
  parallel_list_options opts;
  parallel_list_stats* stats;
  std::deque<piece> queue;
  unsigned busy = 0, alive = 0;
  std::error_code error;
  // Condition variables: waiters wait on a timer that never expires; cancel() wakes them all.
  asio::steady_timer wake, done;
};

// Drops the items of `page` past `end`; true when there were any.
bool clip(list_page& page, const std::string& end) {
  if (end.empty()) return false;
  auto obj = std::find_if(page.objects.begin(), page.objects.end(), [&](auto& o) { return o.key > end; });
  auto cp = std::find_if(page.common_prefixes.begin(), page.common_prefixes.end(), [&](auto& p) { return p > end; });
  bool clipped = obj != page.objects.end() || cp != page.common_prefixes.end();
  page.objects.erase(obj, page.objects.end());
  page.common_prefixes.erase(cp, page.common_prefixes.end());
  return clipped;
}

awaitable<void> list_piece(std::shared_ptr<list_state> st, piece p) {
  list_request req = st->base;
  req.start_after = p.token.empty() ? p.after : std::string();
  req.continuation_token = p.token;
  if (st->stats) ++st->stats->pieces;
  for (;;) {
    auto page = co_await st->client.list(req);
    if (st->stats) ++st->stats->requests;
    if (st->error) co_return;  // another piece failed meanwhile
    if (!page) {
      st->error = page.error();
      st->queue.clear();
      st->wake.cancel();
      co_return;
    }
    const bool past_end = clip(*page, p.end);
    // The page's span, for the cut points.
    std::string first, last;
    if (!page->objects.empty()) first = page->objects.front().key, last = page->objects.back().key;
    if (!page->common_prefixes.empty()) {
      if (first.empty() || page->common_prefixes.front() < first) first = page->common_prefixes.front();
      if (last.empty() || page->common_prefixes.back() > last) last = page->common_prefixes.back();
    }
    const bool more = page->truncated && !past_end;
    std::string token = page->next_continuation_token;
    st->sink(*page);
    if (!more) co_return;
    auto points = first < last ? cut_points(first, last, p.end, std::max(1u, st->opts.fanout) - 1)
                               : std::vector<std::string>{};
    if (!points.empty()) {
      if (st->stats) ++st->stats->splits;
      for (std::size_t i = 0; i < points.size(); ++i)
        st->queue.push_back({points[i], {}, i + 1 < points.size() ? points[i + 1] : p.end});
      p.end = points.front();
      st->wake.cancel();
    }
    // This piece goes on from where the page stopped, up to its (maybe new) end.
    req.start_after.clear();
    req.continuation_token = token;
  }
}

awaitable<void> worker(std::shared_ptr<list_state> st) {
  for (;;) {
    while (st->queue.empty() && !st->error && st->busy > 0) co_await st->wake.async_wait(use_tuple);
    if (st->error || st->queue.empty()) break;
    piece p = std::move(st->queue.front());
    st->queue.pop_front();
    ++st->busy;
    co_await list_piece(st, std::move(p));
    --st->busy;
    if (st->busy == 0 && st->queue.empty()) st->wake.cancel();  // the idle workers can leave
  }
  if (--st->alive == 0) st->done.cancel();
}

}  // namespace

std::vector<std::string> cut_points(const std::string& first, const std::string& last, const std::string& end,
                                    unsigned count) {
  std::vector<std::string> out;
  if (!(first < last)) return out;
  const std::size_t common = common_prefix(first, last);
  // Start a few characters before the divergence (at a character boundary), so carries work.
  std::size_t start = common;
  for (int k = 0; k < context_chars && start > 0; ++k) {
    --start;
    while (start > 0 && continuation(last[start])) --start;
  }
  auto a = code_points(first, start), b = code_points(last, start);
  const std::size_t diverge = code_points(last.substr(0, common), start).size();
  std::vector<char_range> ranges;
  u128 limit = 1;
  for (std::size_t k = 0; k < diverge + detail_chars; ++k) {
    char_range r{printable_low, printable_high};
    bool seen = false;
    for (auto* cps : {&a, &b})
      if (k < cps->size()) {
        auto c = class_of((*cps)[k]);
        r = seen ? char_range{std::min(r.low, c.low), std::max(r.high, c.high)} : c;
        seen = true;
      }
    u128 radix = r.high - r.low + 1;
    if (limit > (u128(1) << 100) / radix) break;
    limit *= radix;
    ranges.push_back(r);
  }
  auto value = [&](const std::vector<std::uint32_t>& cps) {
    u128 v = 0;
    for (std::size_t k = 0; k < ranges.size(); ++k) {
      u128 radix = ranges[k].high - ranges[k].low + 1;
      u128 d = 0;
      if (k < cps.size()) d = cps[k] < ranges[k].low ? 0 : std::min<u128>(cps[k] - ranges[k].low, radix - 1);
      v = v * radix + d;
    }
    return v;
  };
  const u128 va = value(a), vb = value(b);
  if (vb <= va) return out;
  const u128 w = vb - va;
  const std::string prefix = last.substr(0, start);
  count = std::min(count, 48u);
  std::vector<std::uint32_t> cps(ranges.size());
  for (u128 j = 1; out.size() < count; j = j < 8 ? j + 1 : j * 2) {
    if (w > (limit - vb) / j) break;  // past every key with this prefix: the rest is one piece
    u128 p = vb + w * j;
    for (std::size_t k = ranges.size(); k-- > 0;) {
      u128 radix = ranges[k].high - ranges[k].low + 1;
      cps[k] = ranges[k].low + static_cast<std::uint32_t>(p % radix);
      p /= radix;
    }
    std::string s = prefix + encode(cps);
    if (s <= last || (!out.empty() && s <= out.back())) continue;
    if (!end.empty() && s >= end) break;
    out.push_back(std::move(s));
  }
  return out;
}

awaitable<std::error_code> parallel_list_into(object_client& client, list_request request, list_sink sink,
                                              parallel_list_options opts, parallel_list_stats* stats) {
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<list_state>(client, std::move(request), std::move(sink), opts, stats, ex);
  st->queue.push_back({});
  const unsigned workers = std::max(1u, opts.max_in_flight);
  st->alive = workers;
  for (unsigned i = 0; i < workers; ++i) asio::co_spawn(ex, worker(st), asio::detached);
  while (st->alive > 0) co_await st->done.async_wait(use_tuple);
  co_return st->error;
}

awaitable<result<list_page>> parallel_list(object_client& client, list_request request, parallel_list_options opts,
                                           parallel_list_stats* stats) {
  list_page out;
  auto ec = co_await parallel_list_into(
      client, std::move(request),
      [&out](list_page& page) {
        for (auto& o : page.objects) out.objects.push_back(std::move(o));
        for (auto& p : page.common_prefixes) out.common_prefixes.push_back(std::move(p));
      },
      opts, stats);
  if (ec) co_return ec;
  std::sort(out.objects.begin(), out.objects.end(), [](auto& x, auto& y) { return x.key < y.key; });
  out.objects.erase(std::unique(out.objects.begin(), out.objects.end(), [](auto& x, auto& y) { return x.key == y.key; }),
                    out.objects.end());
  std::sort(out.common_prefixes.begin(), out.common_prefixes.end());
  out.common_prefixes.erase(std::unique(out.common_prefixes.begin(), out.common_prefixes.end()),
                            out.common_prefixes.end());
  co_return out;
}

}  // namespace valkyrie::s3
