#include "protocol/signalr.hpp"

namespace spiderhub::protocol::signalr {
namespace {

json parse_json_object(std::string_view record, const char* what) {
  json j = json::parse(record.begin(), record.end(), nullptr, false);
  if (j.is_discarded())
    throw core::input_error(std::string(what) + ": not valid JSON");
  if (!j.is_object())
    throw core::input_error(std::string(what) + ": expected a JSON object");
  return j;
}

std::optional<std::string> optional_string(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return std::nullopt;
  if (!it->is_string())
    throw core::input_error(std::string("hub message: '") + key + "' must be a string");
  return it->get<std::string>();
}

std::string with_separator(const json& j) {
  auto s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  s += record_separator;
  return s;
}

} // namespace

std::vector<std::string> record_splitter::feed(std::string_view bytes) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < bytes.size()) {
    auto pos = bytes.find(record_separator, start);
    auto piece = bytes.substr(start, pos == std::string_view::npos ? pos : pos - start);
    if (partial_.size() + piece.size() > max_) {
      partial_.clear();
      throw core::input_error("hub record larger than " + std::to_string(max_) + " bytes");
    }
    partial_.append(piece);
    if (pos == std::string_view::npos)
      break;
    out.push_back(std::move(partial_));
    partial_.clear();
    start = pos + 1;
  }
  return out;
}

void parse_handshake_request(std::string_view record) {
  auto j = parse_json_object(record, "handshake");
  auto protocol = j.find("protocol");
  auto version = j.find("version");
  if (protocol == j.end() || !protocol->is_string())
    throw core::input_error("handshake: missing 'protocol'");
  if (*protocol != "json")
    throw core::input_error("handshake: protocol '" + protocol->get<std::string>() +
                            "' is not supported, use 'json'");
  if (version == j.end() || !version->is_number_integer() || *version != 1)
    throw core::input_error("handshake: only version 1 is supported");
}

std::string parse_handshake_response(std::string_view record) {
  auto j = parse_json_object(record, "handshake response");
  if (j.contains("type"))
    throw core::input_error("handshake response expected, got a hub message");
  auto err = optional_string(j, "error");
  return err ? *err : std::string{};
}

std::string handshake_request() {
  return with_separator(json{{"protocol", "json"}, {"version", 1}});
}

std::string handshake_response(const std::string& error) {
  return with_separator(error.empty() ? json::object() : json{{"error", error}});
}

hub_message parse_message(std::string_view record) {
  auto j = parse_json_object(record, "hub message");
  auto type = j.find("type");
  if (type == j.end() || !type->is_number_integer())
    throw core::input_error("hub message: missing integer 'type'");
  switch (type->get<int>()) {
    case 1: {
      invocation m;
      m.invocation_id = optional_string(j, "invocationId");
      auto target = optional_string(j, "target");
      if (!target || target->empty())
        throw core::input_error("invocation: missing 'target'");
      m.target = std::move(*target);
      auto args = j.find("arguments");
      if (args != j.end() && !args->is_null()) {
        if (!args->is_array())
          throw core::input_error("invocation: 'arguments' must be an array");
        m.arguments = std::move(*args);
      }
      return m;
    }
    case 3: {
      completion m;
      auto id = optional_string(j, "invocationId");
      if (!id)
        throw core::input_error("completion: missing 'invocationId'");
      m.invocation_id = std::move(*id);
      m.error = optional_string(j, "error");
      if (auto r = j.find("result"); r != j.end())
        m.result = std::move(*r);
      return m;
    }
    case 6:
      return ping{};
    case 7: {
      close_message m;
      m.error = optional_string(j, "error");
      if (auto r = j.find("allowReconnect"); r != j.end() && r->is_boolean())
        m.allow_reconnect = r->get<bool>();
      return m;
    }
    default:
      throw core::input_error("hub message: type " + std::to_string(type->get<int>()) +
                              " is not supported");
  }
}

std::string encode(const invocation& m) {
  json j{{"type", 1}, {"target", m.target}, {"arguments", m.arguments}};
  if (m.invocation_id)
    j["invocationId"] = *m.invocation_id;
  return with_separator(j);
}

std::string encode(const completion& m) {
  json j{{"type", 3}, {"invocationId", m.invocation_id}};
  if (m.error)
    j["error"] = *m.error;
  else if (m.result)
    j["result"] = *m.result;
  return with_separator(j);
}

std::string encode_ping() { return with_separator(json{{"type", 6}}); }

std::string encode(const close_message& m) {
  json j{{"type", 7}};
  if (m.error)
    j["error"] = *m.error;
  if (m.allow_reconnect)
    j["allowReconnect"] = true;
  return with_separator(j);
}

} // namespace spiderhub::protocol::signalr
