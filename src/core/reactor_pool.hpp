#pragma once
// The reactor pool: one single-threaded Asio io_context per core, each on its own thread
// (optionally pinned to a CPU). With the io_uring option Asio runs on io_uring.
//
// Threading: everything posted to reactor i runs on reactor i's thread only, so state owned by a
// reactor needs no lock. Work moves between reactors only by post().
// Invariants: contexts exist from construction to destruction; threads run between start() and
// stop(); stop() is idempotent and joins every thread.
// Beside the reactors, one background thread for bulk CPU work that must not hold a reactor
// (core/background.hpp); join() stops it after the reactors (work not started is dropped; its
// completions then wait in their reactors' queues, destroyed with the pending work).
// Teardown: join(), then destroy_pending_work() while everything the reactors' coroutines refer to
// still exists, then destroy those objects (their timers and sockets need the contexts), then the
// pool last.
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "core/asio.hpp"

namespace valkyrie {

class reactor_pool {
 public:
  struct options {
    unsigned threads = 0;  // 0: one per online CPU
    bool pin = false;      // pin reactor i to CPU i % cores
  };

  explicit reactor_pool(options opts);
  ~reactor_pool();
  reactor_pool(const reactor_pool&) = delete;
  reactor_pool& operator=(const reactor_pool&) = delete;

  unsigned size() const { return static_cast<unsigned>(contexts_.size()); }
  asio::io_context& context(unsigned i) { return *contexts_.at(i); }
  asio::any_io_executor executor(unsigned i) { return contexts_.at(i)->get_executor(); }
  // The background thread's executor (in_background, core/background.hpp).
  asio::any_io_executor background() { return background_->get_executor(); }

  void start();
  // Asks every reactor to stop (pending handlers are dropped); callable from any thread,
  // reactors included. Does not wait.
  void request_stop();
  // Waits for the reactor threads to end (after request_stop(), or after drain_and_join()
  // let them run out of work). Not callable from a reactor.
  void join();
  // request_stop() + join().
  void stop();
  // Lets the reactors finish their outstanding work, then joins.
  void drain_and_join();
  // After join(): destroys every reactor's pending work (coroutines suspended on I/O or timers,
  // queued handlers), running their destructors on the calling thread. The contexts stay usable
  // for destroying I/O objects until the pool itself goes. Idempotent.
  void destroy_pending_work();

  template <class F>
  void post(unsigned i, F&& f) {
    asio::post(*contexts_.at(i), std::forward<F>(f));
  }

  // Index of the reactor whose thread is calling, or -1 from any other thread.
  static int current();

 private:
  options opts_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::unique_ptr<asio::thread_pool> background_;
};

}  // namespace valkyrie
