// Fuzz target: the credential document of EC2 IMDS and ECS (src/s3/credentials.*,
// parse_credentials_json). Invariant: what it accepts can sign a request, i.e. it has a key id
// and a secret (an empty key id would make the client send unsigned requests).
#include "fuzz.hpp"
#include "s3/credentials.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  if (auto c = valkyrie::s3::parse_credentials_json(json)) {
    FUZZ_CHECK(!c->anonymous(), json);
    FUZZ_CHECK(!c->secret_access_key.empty(), json);
  }
  return 0;
}
