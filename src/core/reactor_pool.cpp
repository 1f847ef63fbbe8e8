#include "core/reactor_pool.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/log.hpp"

namespace valkyrie {
namespace {
thread_local int current_reactor = -1;

// io_context keeps shutdown() (destroy every pending operation, keep the services) protected: its
// destructor runs it just before it frees the services. Reached through a derived class so that
// pending coroutines can be destroyed while what they refer to (the cache, the clients) exists.
struct shutdown_access : asio::io_context {
  // Destroys ctx's pending work; &shutdown_access::shutdown names execution_context's member,
  // so it is callable on any io_context.
  static void destroy_pending(asio::io_context& ctx) { (ctx.*(&shutdown_access::shutdown))(); }
};
}  // namespace

reactor_pool::reactor_pool(options opts) : opts_(opts) {
  unsigned n = opts_.threads ? opts_.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) {
    // Concurrency hint 1: each context is only ever run by its own thread.
    contexts_.push_back(std::make_unique<asio::io_context>(1));
  }
  background_ = std::make_unique<asio::thread_pool>(1);
  asio::post(*background_, [] {
    pthread_setname_np(pthread_self(), "background");
    // Below the reactors: sharing a CPU with one, it yields to its requests (a thread's own nice
    // value on Linux; raising it needs no privilege).
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  });
}

reactor_pool::~reactor_pool() {
  stop();
}

void reactor_pool::start() {
  if (!threads_.empty()) return;
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < contexts_.size(); ++i) {
    guards_.emplace_back(contexts_[i]->get_executor());
    threads_.emplace_back([this, i, cores] {
      current_reactor = static_cast<int>(i);
      std::string name = "reactor-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      if (opts_.pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(i % cores, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
          log::get("core")->warn("could not pin reactor {} to cpu {}", i, i % cores);
      }
      contexts_[i]->run();
    });
  }
}

void reactor_pool::request_stop() {
  for (auto& c : contexts_) c->stop();
}

void reactor_pool::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  guards_.clear();
  // After the reactors: a background job that finishes now queues its completion on a reactor
  // that no longer runs (destroy_pending_work() destroys it with the coroutine that waited).
  background_->stop();
  background_->join();
}

void reactor_pool::stop() {
  request_stop();
  join();
}

void reactor_pool::drain_and_join() {
  guards_.clear();
  join();
}

void reactor_pool::destroy_pending_work() {
  join();
  // Twice: a coroutine's destructor may post a handler (a pin released wakes its waiters), which
  // the first pass queued and the second destroys.
  for (int pass = 0; pass < 2; ++pass)
    for (auto& c : contexts_) shutdown_access::destroy_pending(*c);
}

int reactor_pool::current() {
  return current_reactor;
}

}  // namespace valkyrie
