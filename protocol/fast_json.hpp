#pragma once
// Hot-path JSON for the crawl pipeline (simdjson underneath; the only file that includes
// it). Hub records are split into an envelope plus the raw JSON text of their arguments or
// result, so a SaveBlockResponse of 50 pages is scanned once and each result object is
// stored as the bytes the node sent, and a Poll reply is decoded without a DOM.
// Everything else uses the nlohmann codec in json_codec.hpp.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/types.hpp"

namespace spiderhub::protocol::fast {

/// One SignalR hub record: type 1 invocation, 3 completion, 6 ping, 7 close.
struct raw_message {
  int type = 0;
  std::optional<std::string> invocation_id;
  std::string target;                  // invocation
  std::string arguments = "[]";        // invocation: raw JSON array text
  std::optional<std::string> error;    // completion / close
  std::optional<std::string> result;   // completion: raw JSON text of the result, if any
  bool allow_reconnect = false;        // close
};

/// Parses one record (without the 0x1E). Throws core::input_error naming the problem.
raw_message parse_record(std::string_view record);

/// A result as received from a node: the fields the broker needs plus the raw object.
struct raw_result {
  std::string request_hash;
  std::int32_t status_code = 0;
  std::string error;
  std::string error_kind;            // protocol::error_kinds, "" from older nodes
  std::string redirect_to;           // a 3xx the node handed back (Site.brokerRedirects)
  std::int64_t response_time = 0;    // ms
  bool deferred = false;             // see protocol::result::deferred
  std::int64_t retry_after_ms = -1;
  std::string proxy;                      // redacted, "" = none
  std::vector<std::string> proxy_errors;  // proxies of the attempts that failed there
  std::string body;  // JSON object text without resultId, ready to store
};

struct raw_block_response {
  std::string block_id;
  std::string identity;
  std::string exception;
  std::vector<raw_result> results;
};

/// Decodes the arguments array of a SaveBlockResponse call ([BlockResponse]).
/// Throws core::input_error with the JSON path.
raw_block_response parse_block_response(std::string_view arguments_json);

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, raw_result& x) {
  return f(x.request_hash, x.status_code, x.error, x.response_time, x.deferred, x.retry_after_ms,
           x.body);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, raw_block_response& x) {
  return f(x.block_id, x.identity, x.exception, x.results);
}

/// A request as pushed by a worker: its dedup hash and its JSON object text.
struct raw_request {
  std::string hash;
  std::string json;
  std::string url;
  std::int32_t depth = 0;
  // A fingerprinted GET/HEAD without body and dontFilter: the hash of its canonical URL,
  // which dedups it too (and is recorded as taken).
  std::string url_hash;
};

/// Decodes the arguments of a Push call ([identity, Request[]]): validates every request
/// like decode<request> does, computes its hash, keeps its bytes. Throws core::input_error.
std::pair<std::string, std::vector<raw_request>> parse_push(std::string_view arguments_json);

template <class Inspector> typename Inspector::result_type inspect(Inspector& f, raw_request& x) {
  return f(x.hash, x.json, x.url, x.depth, x.url_hash);
}

/// Decodes the arguments of a Receive call ([Block]) as decode<block> does, without a DOM
/// (a block carries up to hundreds of requests; the site settings, one per block, go
/// through the DOM decoder). Throws core::input_error.
block parse_block(std::string_view arguments_json);

/// The "url" string of a stored request's JSON object (the last one when the key repeats,
/// as the DOM decoder keeps it); "" when the text is not a JSON object or has no string
/// "url" at its top level. Never throws.
std::string request_url(std::string_view request_json);

/// Decodes a JSON array of results (a Poll reply). Throws core::input_error.
std::vector<result> parse_results(std::string_view array_json);

/// Appends `s` as a JSON string literal (quotes included). Invalid UTF-8 bytes become
/// U+FFFD so the output is always valid JSON.
void append_json_string(std::string& out, std::string_view s);
/// Appends the JSON object of a request (the fields of to_json(request), invalid UTF-8
/// replaced like append_json_string).
void append_json(std::string& out, const request& r);
/// Appends the JSON object of a result; resultId is omitted when 0.
void append_json(std::string& out, const result& r);
/// The JSON object text of a block response.
std::string encode_block_response(const block_response& b);

} // namespace spiderhub::protocol::fast
