#include "core/digest.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cctype>
#include <charconv>
#include <stdexcept>

namespace spiderhub::core {
namespace {

std::string to_hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

std::string digest_hex(const EVP_MD* md, std::string_view data) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), buf, &len, md, nullptr) != 1)
    throw std::runtime_error("EVP_Digest failed");
  return to_hex(buf, len);
}

} // namespace

std::string md5_hex(std::string_view data) { return digest_hex(EVP_md5(), data); }

std::string sha256_hex(std::string_view data) { return digest_hex(EVP_sha256(), data); }

sha256_stream::sha256_stream() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("EVP_DigestInit_ex failed");
}

sha256_stream::~sha256_stream() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void sha256_stream::update(std::string_view data) {
  if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size()) != 1)
    throw std::runtime_error("EVP_DigestUpdate failed");
}

std::string sha256_stream::hex() {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), buf, &len) != 1)
    throw std::runtime_error("EVP_DigestFinal_ex failed");
  return to_hex(buf, len);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view msg) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), buf, &len))
    throw std::runtime_error("HMAC failed");
  return to_hex(buf, len);
}

bool secure_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string connection_sign(std::string_view token, std::string_view subject, std::int64_t ts) {
  std::string msg(subject);
  msg += '\n';
  msg += std::to_string(ts);
  return hmac_sha256_hex(token, msg);
}

std::string verify_connection_sign(std::string_view token, std::string_view subject,
                                   std::string_view ts_text, std::string_view sign,
                                   std::int64_t now_unix, std::int64_t window_seconds) {
  if (ts_text.empty())
    return "missing ts";
  if (sign.empty())
    return "missing sign";
  std::int64_t ts = 0;
  auto [ptr, ec] = std::from_chars(ts_text.data(), ts_text.data() + ts_text.size(), ts);
  if (ec != std::errc{} || ptr != ts_text.data() + ts_text.size())
    return "ts is not an integer";
  // |now - ts| in unsigned arithmetic: the signed difference overflows for extreme ts.
  auto skew = now_unix > ts ? static_cast<std::uint64_t>(now_unix) - static_cast<std::uint64_t>(ts)
                            : static_cast<std::uint64_t>(ts) - static_cast<std::uint64_t>(now_unix);
  if (window_seconds < 0 || skew > static_cast<std::uint64_t>(window_seconds))
    return "clock skew: ts is " + std::to_string(skew) + " s " + (ts > now_unix ? "ahead of" : "behind") +
           " the broker's clock, the allowed window is " + std::to_string(window_seconds) + " s";
  if (!secure_equals(connection_sign(token, subject, ts), sign))
    return "wrong sign";
  return {};
}

std::string new_guid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1)
    throw std::runtime_error("RAND_bytes failed");
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  auto hex = to_hex(b, sizeof b);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

bool is_guid(std::string_view s) {
  if (s.size() != 36)
    return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    char c = s[i];
    if (dash ? c != '-' : !std::isxdigit(static_cast<unsigned char>(c)))
      return false;
  }
  return true;
}

} // namespace spiderhub::core
