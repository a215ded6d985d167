#pragma once
// Hashes and signatures used on the wire (OpenSSL EVP underneath).
#include <cstdint>
#include <string>
#include <string_view>

namespace spiderhub::core {

std::string md5_hex(std::string_view data);
std::string sha256_hex(std::string_view data);

/// SHA-256 over data arriving in pieces (package downloads and uploads).
class sha256_stream {
 public:
  sha256_stream();
  ~sha256_stream();
  sha256_stream(const sha256_stream&) = delete;
  sha256_stream& operator=(const sha256_stream&) = delete;
  void update(std::string_view data);
  /// Lower-case hex digest; the stream cannot be updated afterwards.
  std::string hex();

 private:
  void* ctx_;  // EVP_MD_CTX
};
/// Lower-case hex HMAC-SHA256(key, msg).
std::string hmac_sha256_hex(std::string_view key, std::string_view msg);
/// Constant-time comparison of two strings (for signatures and tokens).
bool secure_equals(std::string_view a, std::string_view b);

/// The connection sign of the design: hmac_sha256_hex(token, subject + "\n" + ts).
std::string connection_sign(std::string_view token, std::string_view subject, std::int64_t ts);

/// Checks a connection sign and its timestamp window; returns "" when valid, else why not.
std::string verify_connection_sign(std::string_view token, std::string_view subject,
                                   std::string_view ts_text, std::string_view sign,
                                   std::int64_t now_unix, std::int64_t window_seconds);

/// Random RFC 4122 version-4 GUID, lower case with dashes.
std::string new_guid();
/// True for a 36-character GUID with dashes.
bool is_guid(std::string_view s);

} // namespace spiderhub::core
