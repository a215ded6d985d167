#include "core/digest.hpp"
#include "protocol/types.hpp"

namespace spiderhub::protocol {

std::string request_hash(const request& r) {
  if (!r.fingerprint.empty())
    return core::md5_hex("fp:" + r.fingerprint).substr(0, 16);
  std::string key;
  key.reserve(r.referer.size() + r.origin.size() + r.method.size() + r.content.size() +
              r.url.size() + 4);
  key.append(r.referer).append(".").append(r.origin).append(".").append(r.method);
  key.append(".").append(r.content).append(".").append(r.url);
  return core::md5_hex(key).substr(0, 16);
}

} // namespace spiderhub::protocol
