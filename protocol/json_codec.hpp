#pragma once
// JSON mapping of the wire types (camelCase keys as in docs/protocol.md).
// Decoding is strict about types and required keys and ignores unknown keys, so newer
// peers can add fields; every failure throws core::input_error naming the JSON path.
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "protocol/types.hpp"

namespace spiderhub::protocol {

using json = nlohmann::json;

json to_json(const request& x);
json to_json(const site& x);
json to_json(const block& x);
json to_json(const result& x);
json to_json(const block_response& x);
json to_json(const heartbeat& x);
json to_json(const run_application& x);
json to_json(const application_exited& x);
json to_json(const application_started& x);
json to_json(const application_log& x);
json to_json(const worker_run& x);

/// decode<T>(j, "path") parses one wire type; `path` prefixes error messages.
template <class T> T decode(const json& j, const std::string& path = "$");
template <> request decode<request>(const json&, const std::string&);
template <> site decode<site>(const json&, const std::string&);
template <> block decode<block>(const json&, const std::string&);
template <> result decode<result>(const json&, const std::string&);
template <> block_response decode<block_response>(const json&, const std::string&);
template <> heartbeat decode<heartbeat>(const json&, const std::string&);
template <> run_application decode<run_application>(const json&, const std::string&);
template <> application_exited decode<application_exited>(const json&, const std::string&);
template <> application_started decode<application_started>(const json&, const std::string&);
template <> application_log decode<application_log>(const json&, const std::string&);
template <> worker_run decode<worker_run>(const json&, const std::string&);

template <class T> json to_json(const std::vector<T>& xs) {
  auto arr = json::array();
  for (const auto& x : xs)
    arr.push_back(to_json(x));
  return arr;
}

template <class T> std::vector<T> decode_array(const json& j, const std::string& path = "$") {
  if (!j.is_array())
    throw core::input_error(path + ": expected an array");
  std::vector<T> out;
  out.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i)
    out.push_back(decode<T>(j[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

/// True when `s` is valid UTF-8 (JSON strings must be).
bool is_valid_utf8(std::string_view s);
std::string base64_encode(std::string_view bytes);
/// Throws core::input_error on characters outside the base64 alphabet.
std::string base64_decode(std::string_view text);

/// Stores a raw body into a result, choosing base64 when it is not UTF-8.
void set_result_body(result& r, std::string body);
/// The raw bytes of a result's body (decodes base64 when needed).
std::string result_body(const result& r);

} // namespace spiderhub::protocol
