#pragma once
// Result type used across layers: a value or a std::error_code. Exceptions are kept for start-up
// and for bugs; everything that can fail at run time returns one of these.
#include <boost/system/result.hpp>
#include <system_error>

namespace valkyrie {
template <class T>
using result = boost::system::result<T, std::error_code>;
}  // namespace valkyrie
