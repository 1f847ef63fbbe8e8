#pragma once
// A plain or TLS byte stream behind one type. Beast's parser, serializer and composed operations
// are templates on the stream: HTTP code written over `any_stream` is compiled once, not once per
// stream type (valkyrie-s3sim's server took twice as long to build when it served both
// `tcp_stream` and `ssl_stream` through one template; docs/testing.md).
//
// What it costs at run time: a virtual call and a type-erased handler (allocated through the
// handler's allocator, which Asio recycles for coroutines) per read_some / write_some. A
// sequence of buffers goes down gathered, up to `max_buffers` at a time; a longer one is a short
// write, which the composed operations above (asio::async_write, Beast's writes) complete.
//
// Threading: that of the wrapped stream (one reactor). At most one read and one write in flight,
// as for any Asio stream; the wrapped stream must outlive this object.
#include <array>
#include <cstddef>
#include <memory>
#include <span>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

namespace valkyrie::s3 {

class any_stream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using handler_type =
      boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
  static constexpr std::size_t max_buffers = 16;

  template <class Stream>
  explicit any_stream(Stream& stream) : impl_(std::make_unique<impl_for<Stream>>(stream)) {}

  executor_type get_executor() const { return impl_->executor(); }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          impl_->read_some(gather(b, read_buffers_), handler_type(std::move(handler)));
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          impl_->write_some(gather(b, write_buffers_), handler_type(std::move(handler)));
        },
        token, buffers);
  }

 private:
  using read_span = std::span<const boost::asio::mutable_buffer>;
  using write_span = std::span<const boost::asio::const_buffer>;

  struct impl {
    virtual ~impl() = default;
    virtual executor_type executor() const = 0;
    virtual void read_some(read_span buffers, handler_type handler) = 0;
    virtual void write_some(write_span buffers, handler_type handler) = 0;
  };

  template <class Stream>
  struct impl_for final : impl {
    explicit impl_for(Stream& s) : stream(s) {}
    executor_type executor() const override { return stream.get_executor(); }
    // The handler goes down bound to the stream's executor (the reactor the caller runs on):
    // Boost 1.81's any_completion_executor lacks the blocking.never that the operations below
    // require of a handler's executor to post a completion.
    void read_some(read_span buffers, handler_type handler) override {
      stream.async_read_some(buffers,
                             boost::asio::bind_executor(stream.get_executor(), std::move(handler)));
    }
    void write_some(write_span buffers, handler_type handler) override {
      stream.async_write_some(
          buffers, boost::asio::bind_executor(stream.get_executor(), std::move(handler)));
    }
    Stream& stream;
  };

  // Copies up to max_buffers non-empty buffers of a sequence into `slots` (members: they must
  // live until the operation completes, and the next operation in that direction starts only
  // after this one completed).
  template <class Sequence, class Buffer>
  static std::span<const Buffer> gather(const Sequence& sequence,
                                        std::array<Buffer, max_buffers>& slots) {
    std::size_t n = 0;
    for (auto it = boost::asio::buffer_sequence_begin(sequence),
              end = boost::asio::buffer_sequence_end(sequence);
         it != end && n < max_buffers; ++it) {
      Buffer b(*it);
      if (b.size() > 0) slots[n++] = b;
    }
    return {slots.data(), n};
  }

  std::unique_ptr<impl> impl_;
  std::array<boost::asio::mutable_buffer, max_buffers> read_buffers_;
  std::array<boost::asio::const_buffer, max_buffers> write_buffers_;
};

}  // namespace valkyrie::s3
