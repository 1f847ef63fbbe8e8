#pragma once
// Lets doctest print valkyrie::result values in failed assertions.
#include <doctest/doctest.h>

#include <string>

#include "core/result.hpp"

namespace doctest {
template <class T>
struct StringMaker<boost::system::result<T, std::error_code>> {
  static String convert(const boost::system::result<T, std::error_code>& r) {
    if (r) return "(a value)";
    std::string s = "(error: " + r.error().message() + ")";
    return String(s.c_str());
  }
};
}  // namespace doctest
