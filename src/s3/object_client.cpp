#include "s3/object_client.hpp"

#include "core/errors.hpp"

namespace valkyrie::s3 {

awaitable<result<std::string>> object_client::put_object(std::string, std::string, bool) {
  co_return make_error_code(errc::invalid_argument);
}

}  // namespace valkyrie::s3
