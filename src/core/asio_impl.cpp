// The single translation unit that compiles Asio, Asio SSL, Beast and Boost.URL
// (separate compilation): every other file only includes their headers, which keeps
// rebuilds fast on small machines.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
#include <boost/url/src.hpp>
