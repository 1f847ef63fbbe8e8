// Fuzz target: the shared credentials and config files (~/.aws/credentials, ~/.aws/config; the
// INI reader in src/s3/credentials.*). The first line of the input names the profile, the rest
// is written to a scratch file that serves as both files. Invariant: a profile found yields a
// key id.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz.hpp"
#include "s3/credentials.hpp"

namespace {
std::string scratch;
void remove_scratch() {
  std::remove(scratch.c_str());
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // In memory where there is /dev/shm: the file is rewritten for every input.
  std::error_code ec;
  auto dir = std::filesystem::is_directory("/dev/shm", ec) ? std::filesystem::path("/dev/shm")
                                                           : std::filesystem::temp_directory_path();
  scratch = (dir / ("valkyrie-fuzz-profile-" + std::to_string(::getpid()))).string();
  std::atexit(remove_scratch);
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", scratch.c_str(), 1);
  ::setenv("AWS_CONFIG_FILE", scratch.c_str(), 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  valkyrie::fuzz::fields in(data, size);
  std::string profile(in.take());
  {
    std::ofstream out(scratch, std::ios::binary | std::ios::trunc);
    out.write(in.rest().data(), static_cast<std::streamsize>(in.rest().size()));
  }
  for (const std::string& p : {profile, std::string("default")})
    if (auto c = valkyrie::s3::credentials_from_profile(p)) FUZZ_CHECK(!c->anonymous(), p);
  return 0;
}
