// The JSON codec of every wire type (DOM decoders) and the fast simdjson decoders of the
// bulk calls; whatever decodes must encode and decode again.
#include <exception>

#include "common.hpp"
#include "protocol/fast_json.hpp"
#include "protocol/json_codec.hpp"

using namespace spiderhub;
using namespace spiderhub::protocol;
using spiderhub::fuzz::require;

namespace {
template <class T> void decode_round_trip(const nlohmann::json& j) {
  try {
    auto x = decode<T>(j, "fuzz");
    auto again = decode<T>(to_json(x), "fuzz");
    require(to_json(again) == to_json(x), "codec round trip");
  } catch (const core::input_error&) {
  }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto s = fuzz::text(data, size);
  try {
    fast::parse_block_response(s);
  } catch (const std::exception&) {
  }
  try {
    fast::parse_push(s);
  } catch (const std::exception&) {
  }
  try {
    for (auto& r : fast::parse_results(s)) {
      std::string out;
      fast::append_json(out, r);
      auto back = fast::parse_results("[" + out + "]");
      require(back.size() == 1 && back[0].url == r.url && back[0].content == r.content,
              "fast result round trip");
    }
  } catch (const core::input_error&) {
  }
  auto j = nlohmann::json::parse(s, nullptr, false);
  if (j.is_discarded())
    return 0;
  decode_round_trip<request>(j);
  decode_round_trip<site>(j);
  decode_round_trip<block>(j);
  decode_round_trip<result>(j);
  decode_round_trip<block_response>(j);
  decode_round_trip<heartbeat>(j);
  decode_round_trip<run_application>(j);
  decode_round_trip<application_exited>(j);
  decode_round_trip<application_started>(j);
  decode_round_trip<application_log>(j);
  decode_round_trip<worker_run>(j);
  return 0;
}
