#include "protocol/fast_json.hpp"

#include <simdjson.h>

#include <cstring>

#include "core/canonical_url.hpp"
#include "core/error.hpp"
#include "core/proxy.hpp"
#include "core/text.hpp"
#include "protocol/json_codec.hpp"

namespace spiderhub::protocol::fast {
namespace {

namespace od = simdjson::ondemand;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw core::input_error(path + ": " + what);
}

// One parser per thread: simdjson parsers hold buffers sized to the largest input.
od::parser& thread_parser() {
  thread_local od::parser parser;
  return parser;
}

template <class T> T check(simdjson::simdjson_result<T> r, const std::string& path,
                           const char* what) {
  T out{};
  if (r.get(out) != simdjson::SUCCESS)
    fail(path, what);
  return out;
}

std::string get_string(od::value v, const std::string& path) {
  std::string_view sv;
  if (v.get_string().get(sv) != simdjson::SUCCESS)
    fail(path, "expected a string");
  return std::string(sv);
}

std::int64_t get_int(od::value v, const std::string& path) {
  std::int64_t x = 0;
  if (v.get_int64().get(x) != simdjson::SUCCESS)
    fail(path, "expected an integer");
  return x;
}

bool get_bool(od::value v, const std::string& path) {
  bool b = false;
  if (v.get_bool().get(b) != simdjson::SUCCESS)
    fail(path, "expected true or false");
  return b;
}

bool is_null(od::value& v) {
  bool null = false;
  return v.is_null().get(null) == simdjson::SUCCESS && null;
}

std::int32_t to_int32(std::int64_t x, const std::string& path) {
  if (x < INT32_MIN || x > INT32_MAX)
    fail(path, "integer out of range");
  return static_cast<std::int32_t>(x);
}

void read_headers(od::value v, header_map& out, const std::string& path) {
  od::object obj;
  if (v.get_object().get(obj) != simdjson::SUCCESS)
    fail(path, "expected an object of strings");
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS)
      fail(path, "bad key");
    out[std::string(key)] = get_string(field.value(), path + "." + std::string(key));
  }
}

// Calls fn(key, value) for every field of `obj` whose value is not null; unknown keys
// are the caller's to ignore.
template <class Fn> void for_each_field(od::object& obj, const std::string& path, Fn&& fn) {
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS)
      fail(path, "bad key");
    od::value v = field.value();
    if (!is_null(v))
      fn(key, v);
  }
}

// [{status, url}, ...] of a result's redirects.
void read_strings(od::value v, std::vector<std::string>& out, const std::string& path) {
  od::array arr;
  if (v.get_array().get(arr) != simdjson::SUCCESS)
    fail(path, "expected an array");
  std::size_t i = 0;
  for (auto item : arr) {
    std::string_view sv;
    if (item.get_string().get(sv) != simdjson::SUCCESS)
      fail(path + "[" + std::to_string(i) + "]", "expected a string");
    out.emplace_back(sv);
    ++i;
  }
}

void read_redirects(od::value v, std::vector<redirect_hop>& out, const std::string& path) {
  od::array arr;
  if (v.get_array().get(arr) != simdjson::SUCCESS)
    fail(path, "expected an array");
  std::size_t i = 0;
  for (auto item : arr) {
    auto ipath = path + "[" + std::to_string(i++) + "]";
    od::object obj;
    if (item.get_object().get(obj) != simdjson::SUCCESS)
      fail(ipath, "expected an object");
    redirect_hop h;
    bool has_url = false;
    for_each_field(obj, ipath, [&](std::string_view key, od::value& f) {
      if (key == "status") {
        h.status = to_int32(get_int(f, ipath + ".status"), ipath + ".status");
      } else if (key == "url") {
        h.url = get_string(f, ipath + ".url");
        has_url = true;
      }
    });
    if (!has_url)
      fail(ipath + ".url", "missing");
    out.push_back(std::move(h));
  }
}

// Fills a result from one JSON object; returns true when it carried a resultId key.
bool read_result(od::object obj, result& r, const std::string& path) {
  bool has_url = false, has_id = false;
  for_each_field(obj, path, [&](std::string_view key, od::value& v) {
    auto p = path + "." + std::string(key);
    if (key == "resultId") {
      r.result_id = get_int(v, p);
      has_id = true;
    } else if (key == "requestHash") {
      r.request_hash = get_string(v, p);
    } else if (key == "url") {
      r.url = get_string(v, p);
      has_url = true;
    } else if (key == "statusCode") {
      r.status_code = to_int32(get_int(v, p), p);
    } else if (key == "responseTime") {
      r.response_time = get_int(v, p);
    } else if (key == "headers") {
      read_headers(v, r.headers, p);
    } else if (key == "content") {
      r.content = get_string(v, p);
    } else if (key == "contentEncoding") {
      r.content_encoding = get_string(v, p);
      if (!r.content_encoding.empty() && r.content_encoding != "base64")
        fail(p, "must be empty or \"base64\"");
    } else if (key == "error") {
      r.error = get_string(v, p);
    } else if (key == "depth") {
      r.depth = to_int32(get_int(v, p), p);
    } else if (key == "deferred") {
      r.deferred = get_bool(v, p);
    } else if (key == "retryAfterMs") {
      r.retry_after_ms = get_int(v, p);
      if (r.retry_after_ms < -1)
        fail(p, "must be >= 0, or -1 for none");
    } else if (key == "finalUrl") {
      r.final_url = get_string(v, p);
    } else if (key == "screenshot") {
      r.screenshot = get_string(v, p);
    } else if (key == "errorKind") {
      r.error_kind = get_string(v, p);
      if (!r.error_kind.empty() && !error_kinds::known(r.error_kind))
        fail(p, "unknown kind '" + r.error_kind + "'");
    } else if (key == "size") {
      r.size = get_int(v, p);
    } else if (key == "redirects") {
      read_redirects(v, r.redirects, p);
    } else if (key == "encoding") {
      r.encoding = get_string(v, p);
    } else if (key == "encodingSource") {
      r.encoding_source = get_string(v, p);
    } else if (key == "redirectTo") {
      r.redirect_to = get_string(v, p);
    } else if (key == "redirectedFrom") {
      r.redirected_from = get_string(v, p);
    } else if (key == "payload") {
      r.payload = get_string(v, p);
    } else if (key == "proxy") {
      r.proxy = get_string(v, p);
    } else if (key == "proxyErrors") {
      read_strings(v, r.proxy_errors, p);
    }
  });
  if (!has_url)
    fail(path + ".url", "missing");
  return has_id;
}

constexpr char hex_digits[] = "0123456789abcdef";

// The fields of a node's result the broker acts on; the body (content, headers) is
// type-checked but not copied, since the object's bytes are stored as they are.
bool read_result_summary(od::object obj, result& r, const std::string& path) {
  bool has_url = false, has_id = false;
  for_each_field(obj, path, [&](std::string_view key, od::value& v) {
    if (key == "resultId") {
      get_int(v, path + ".resultId");
      has_id = true;
    } else if (key == "requestHash") {
      r.request_hash = get_string(v, path + ".requestHash");
    } else if (key == "url") {
      std::string_view sv;
      if (v.get_string().get(sv) != simdjson::SUCCESS)
        fail(path + ".url", "expected a string");
      has_url = true;
    } else if (key == "statusCode") {
      r.status_code = to_int32(get_int(v, path + ".statusCode"), path + ".statusCode");
    } else if (key == "error") {
      r.error = get_string(v, path + ".error");
    } else if (key == "content" || key == "contentEncoding") {
      od::raw_json_string rs;
      if (v.get_raw_json_string().get(rs) != simdjson::SUCCESS)
        fail(path + "." + std::string(key), "expected a string");
    } else if (key == "responseTime") {
      r.response_time = get_int(v, path + ".responseTime");
    } else if (key == "depth") {
      get_int(v, path + ".depth");
    } else if (key == "deferred") {
      r.deferred = get_bool(v, path + ".deferred");
    } else if (key == "retryAfterMs") {
      r.retry_after_ms = get_int(v, path + ".retryAfterMs");
      if (r.retry_after_ms < -1)
        fail(path + ".retryAfterMs", "must be >= 0, or -1 for none");
    } else if (key == "errorKind") {
      r.error_kind = get_string(v, path + ".errorKind");
      if (!r.error_kind.empty() && !error_kinds::known(r.error_kind))
        fail(path + ".errorKind", "unknown kind '" + r.error_kind + "'");
    } else if (key == "size") {
      r.size = get_int(v, path + ".size");
    } else if (key == "redirectTo") {
      r.redirect_to = get_string(v, path + ".redirectTo");
    } else if (key == "proxy") {
      r.proxy = get_string(v, path + ".proxy");
    } else if (key == "proxyErrors") {
      read_strings(v, r.proxy_errors, path + ".proxyErrors");
    }
  });
  if (!has_url)
    fail(path + ".url", "missing");
  return has_id;
}

// Raw JSON text of any value (objects and arrays whole, scalars as their token).
std::string raw_value(od::value& v) {
  od::json_type t;
  if (v.type().get(t) != simdjson::SUCCESS)
    fail("completion", "'result' is not valid JSON");
  std::string_view raw;
  simdjson::error_code err;
  if (t == od::json_type::object) {
    od::object o;
    err = v.get_object().get(o);
    if (!err)
      err = o.raw_json().get(raw);
  } else if (t == od::json_type::array) {
    od::array a;
    err = v.get_array().get(a);
    if (!err)
      err = a.raw_json().get(raw);
  } else {
    raw = v.raw_json_token();
    err = simdjson::SUCCESS;
    // raw_json_token keeps trailing white space before the next token.
    while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' ||
                            raw.back() == '\t'))
      raw.remove_suffix(1);
  }
  if (err)
    fail("completion", "'result' is not valid JSON");
  return std::string(raw);
}

// Parses `padded` into `doc` (both outlive what is read from it) and returns its top-level
// array; `what` names the array in errors.
od::array top_array(simdjson::padded_string& padded, od::document& doc, const char* what) {
  if (thread_parser().iterate(padded).get(doc) != simdjson::SUCCESS)
    fail(what, "not valid JSON");
  od::array arr;
  if (doc.get_array().get(arr) != simdjson::SUCCESS)
    fail(what, "expected an array");
  return arr;
}

// One request object, validated like decode<request> (unknown keys ignored, null as
// absent, url required and not empty, method GET when missing).
void read_request(od::object& obj, request& r, const std::string& path) {
  bool has_url = false;
  for_each_field(obj, path, [&](std::string_view key, od::value& v) {
    auto p = [&] { return path + "." + std::string(key); };  // built only for a message
    if (key == "url") {
      r.url = get_string(v, p());
      has_url = true;
    } else if (key == "method") {
      r.method = get_string(v, p());
    } else if (key == "referer") {
      r.referer = get_string(v, p());
    } else if (key == "origin") {
      r.origin = get_string(v, p());
    } else if (key == "content") {
      r.content = get_string(v, p());
    } else if (key == "depth") {
      r.depth = to_int32(get_int(v, p()), p());
    } else if (key == "cycleTriedTimes") {
      r.cycle_tried_times = to_int32(get_int(v, p()), p());
    } else if (key == "headers") {
      read_headers(v, r.headers, p());
    } else if (key == "redirectedFrom") {
      r.redirected_from = get_string(v, p());
    } else if (key == "redirects") {
      read_redirects(v, r.redirects, p());
    } else if (key == "fingerprint") {
      r.fingerprint = get_string(v, p());
      if (r.fingerprint.empty() || r.fingerprint.size() > max_fingerprint_bytes)
        fail(p(), "must be 1 to " + std::to_string(max_fingerprint_bytes) + " bytes");
    } else if (key == "dontFilter") {
      r.dont_filter = get_bool(v, p());
    } else if (key == "proxy") {
      r.proxy = get_string(v, p());
      if (!r.proxy.empty() && r.proxy != "direct") {
        try {
          core::parse_proxy_url(r.proxy);
        } catch (const core::input_error& e) {
          fail(p(), e.what());
        }
      }
    } else if (key == "payload") {
      r.payload = get_string(v, p());
      if (r.payload.size() > max_payload_bytes)
        fail(p(), "is longer than " + std::to_string(max_payload_bytes) + " bytes");
    }
  });
  if (!has_url)
    fail(path + ".url", "missing");
  if (r.url.empty())
    fail(path + ".url", "must not be empty");
  if (r.method.empty())
    r.method = "GET";
}

} // namespace

raw_message parse_record(std::string_view record) {
  simdjson::padded_string padded(record);
  od::document doc;
  if (thread_parser().iterate(padded).get(doc) != simdjson::SUCCESS)
    fail("hub message", "not valid JSON");
  od::object obj;
  if (doc.get_object().get(obj) != simdjson::SUCCESS)
    fail("hub message", "expected a JSON object");
  raw_message m;
  bool has_type = false;
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS)
      fail("hub message", "not valid JSON");
    od::value v = field.value();
    if (key == "type") {
      std::int64_t t = 0;
      if (v.get_int64().get(t) != simdjson::SUCCESS)
        fail("hub message", "missing integer 'type'");
      m.type = static_cast<int>(t);
      has_type = true;
    } else if (key == "invocationId") {
      if (!is_null(v))
        m.invocation_id = get_string(v, "hub message: 'invocationId'");
    } else if (key == "target") {
      m.target = get_string(v, "hub message: 'target'");
    } else if (key == "arguments") {
      od::array arr;
      if (v.get_array().get(arr) != simdjson::SUCCESS)
        fail("invocation", "'arguments' must be an array");
      std::string_view raw;
      if (arr.raw_json().get(raw) != simdjson::SUCCESS)
        fail("invocation", "'arguments' is not valid JSON");
      m.arguments.assign(raw);
    } else if (key == "error") {
      if (!is_null(v))
        m.error = get_string(v, "hub message: 'error'");
    } else if (key == "result") {
      m.result = raw_value(v);
    } else if (key == "allowReconnect") {
      bool b = false;
      if (v.get_bool().get(b) == simdjson::SUCCESS)
        m.allow_reconnect = b;
    }
    // Other keys (headers, streamIds, ...) are ignored.
  }
  if (!has_type)
    fail("hub message", "missing integer 'type'");
  switch (m.type) {
    case 1:
      if (m.target.empty())
        fail("invocation", "missing 'target'");
      break;
    case 3:
      if (!m.invocation_id)
        fail("completion", "missing 'invocationId'");
      break;
    case 6:
    case 7:
      break;
    default:
      fail("hub message", "type " + std::to_string(m.type) + " is not supported");
  }
  return m;
}

raw_block_response parse_block_response(std::string_view arguments_json) {
  const std::string path = "SaveBlockResponse.arguments[0]";
  simdjson::padded_string padded(arguments_json);
  od::document doc;
  auto args = top_array(padded, doc, "SaveBlockResponse.arguments");
  od::object obj;
  bool found = false;
  for (auto elem : args) {
    if (elem.get_object().get(obj) != simdjson::SUCCESS)
      fail(path, "expected an object");
    found = true;
    break;
  }
  if (!found)
    fail("SaveBlockResponse", "expected 1 argument, got 0");
  raw_block_response out;
  std::vector<std::string_view> raw_results;
  bool has_block = false, has_identity = false;
  for_each_field(obj, path, [&](std::string_view key, od::value& v) {
    if (key == "blockId") {
      out.block_id = get_string(v, path + ".blockId");
      has_block = true;
    } else if (key == "identity") {
      out.identity = get_string(v, path + ".identity");
      has_identity = true;
    } else if (key == "exception") {
      out.exception = get_string(v, path + ".exception");
    } else if (key == "results") {
      od::array arr;
      if (v.get_array().get(arr) != simdjson::SUCCESS)
        fail(path + ".results", "expected an array");
      for (auto elem : arr) {
        od::object robj;
        if (elem.get_object().get(robj) != simdjson::SUCCESS)
          fail(path + ".results[" + std::to_string(raw_results.size()) + "]",
               "expected an object");
        std::string_view raw;
        if (robj.raw_json().get(raw) != simdjson::SUCCESS)
          fail(path + ".results", "not valid JSON");
        raw_results.push_back(raw);
      }
    }
  });
  if (!has_block)
    fail(path + ".blockId", "missing");
  if (!has_identity)
    fail(path + ".identity", "missing");
  // Second pass over each result object (views into `padded`, which stays alive): read
  // the fields the broker needs and keep the object's bytes as the stored body.
  od::parser inner;
  out.results.reserve(raw_results.size());
  for (std::size_t i = 0; i < raw_results.size(); ++i) {
    auto rpath = path + ".results[" + std::to_string(i) + "]";
    simdjson::padded_string one(raw_results[i]);
    od::document rdoc;
    if (inner.iterate(one).get(rdoc) != simdjson::SUCCESS)
      fail(rpath, "not valid JSON");
    od::object robj;
    if (rdoc.get_object().get(robj) != simdjson::SUCCESS)
      fail(rpath, "expected an object");
    result r;
    bool has_id = read_result_summary(robj, r, rpath);
    raw_result rr;
    rr.request_hash = r.request_hash;
    rr.status_code = r.status_code;
    rr.error = r.error;
    rr.error_kind = r.error_kind;
    rr.redirect_to = std::move(r.redirect_to);
    rr.response_time = r.response_time;
    rr.deferred = r.deferred;
    rr.retry_after_ms = r.retry_after_ms;
    rr.proxy = std::move(r.proxy);
    rr.proxy_errors = std::move(r.proxy_errors);
    if (has_id) {
      // Stored bodies never carry resultId (the broker splices its own): re-encode.
      simdjson::padded_string again(raw_results[i]);
      od::document full_doc;
      od::object full;
      if (inner.iterate(again).get(full_doc) != simdjson::SUCCESS ||
          full_doc.get_object().get(full) != simdjson::SUCCESS)
        fail(rpath, "expected an object");
      result whole;
      read_result(full, whole, rpath);
      whole.result_id = 0;
      append_json(rr.body, whole);
    } else {
      rr.body.assign(raw_results[i]);
    }
    out.results.push_back(std::move(rr));
  }
  return out;
}

std::string request_url(std::string_view request_json) {
  simdjson::padded_string padded(request_json);
  od::document doc;
  od::object obj;
  if (thread_parser().iterate(padded).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(obj) != simdjson::SUCCESS)
    return {};
  std::string url;
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS)
      return {};
    if (key != "url")
      continue;  // the value is skipped
    std::string_view v;
    if (field.value().get_string().get(v) == simdjson::SUCCESS)
      url.assign(v);
    else
      url.clear();
  }
  // Trailing bytes after the object make the text invalid, as for the DOM decoder.
  const char* rest = nullptr;
  if (doc.current_location().get(rest) == simdjson::SUCCESS)
    return {};  // a token after the object
  return url;
}

block parse_block(std::string_view arguments_json) {
  static const std::string path = "Receive.arguments[0]";
  simdjson::padded_string padded(arguments_json);
  od::document doc;
  auto args = top_array(padded, doc, "Receive.arguments");
  block b;
  bool seen = false, has_id = false, has_identity = false;
  for (auto arg : args) {
    if (seen)
      break;  // further arguments are ignored, as by the DOM decoder
    seen = true;
    od::object obj;
    if (arg.get_object().get(obj) != simdjson::SUCCESS)
      fail(path, "expected an object");
    for_each_field(obj, path, [&](std::string_view key, od::value& v) {
      auto p = [&] { return path + "." + std::string(key); };
      if (key == "blockId") {
        b.block_id = get_string(v, p());
        has_id = true;
      } else if (key == "identity") {
        b.identity = get_string(v, p());
        has_identity = true;
      } else if (key == "command") {
        b.command = to_int32(get_int(v, p()), p());
      } else if (key == "threadNum") {
        b.thread_num = to_int32(get_int(v, p()), p());
      } else if (key == "delayMs") {
        b.delay_ms = to_int32(get_int(v, p()), p());
      } else if (key == "changeIpPattern") {
        b.change_ip_pattern = get_string(v, p());
      } else if (key == "cookies") {
        b.cookies = get_string(v, p());
      } else if (key == "site") {
        // One per block and rich in fields: the DOM decoder reads it.
        od::object site_obj;
        std::string_view raw;
        if (v.get_object().get(site_obj) != simdjson::SUCCESS ||
            site_obj.raw_json().get(raw) != simdjson::SUCCESS)
          fail(p(), "expected an object");
        b.site_settings = decode<site>(nlohmann::json::parse(raw), p());
      } else if (key == "requests") {
        od::array reqs;
        if (v.get_array().get(reqs) != simdjson::SUCCESS)
          fail(p(), "expected an array");
        for (auto elem : reqs) {
          auto rp = [&] { return p() + "[" + std::to_string(b.requests.size()) + "]"; };
          od::object robj;
          if (elem.get_object().get(robj) != simdjson::SUCCESS)
            fail(rp(), "expected an object");
          request r;
          read_request(robj, r, rp());
          b.requests.push_back(std::move(r));
        }
      }
    });
  }
  if (!seen)
    fail("Receive", "missing block");
  if (!has_id)
    fail(path + ".blockId", "missing");
  if (!has_identity)
    fail(path + ".identity", "missing");
  if (b.command < 0 || b.command > 4)
    fail(path + ".command", "must be 0-4");
  if (b.thread_num < 1)
    fail(path + ".threadNum", "must be >= 1");
  if (b.delay_ms < 0)
    fail(path + ".delayMs", "must be >= 0");
  return b;
}

std::pair<std::string, std::vector<raw_request>> parse_push(std::string_view arguments_json) {
  simdjson::padded_string padded(arguments_json);
  od::document doc;
  auto args = top_array(padded, doc, "Push.arguments");
  std::string identity;
  std::vector<std::string_view> raws;
  std::size_t index = 0;
  for (auto arg : args) {
    if (index == 0) {
      std::string_view sv;
      if (arg.get_string().get(sv) != simdjson::SUCCESS || sv.empty())
        fail("Push", "argument 'identity' must be a non-empty string");
      identity.assign(sv);
    } else if (index == 1) {
      od::array reqs;
      if (arg.get_array().get(reqs) != simdjson::SUCCESS)
        fail("Push.arguments[1]", "expected an array");
      for (auto elem : reqs) {
        od::object obj;
        if (elem.get_object().get(obj) != simdjson::SUCCESS)
          fail("Push.arguments[1][" + std::to_string(raws.size()) + "]", "expected an object");
        std::string_view raw;
        if (obj.raw_json().get(raw) != simdjson::SUCCESS)
          fail("Push.arguments[1]", "not valid JSON");
        raws.push_back(raw);
      }
    }
    ++index;
  }
  if (index < 2)
    fail("Push", "expected 2 argument(s), got " + std::to_string(index));
  // Second pass per request: the fields the hash and validation need.
  std::vector<raw_request> out;
  out.reserve(raws.size());
  od::parser inner;
  for (std::size_t i = 0; i < raws.size(); ++i) {
    auto path = "Push.arguments[1][" + std::to_string(i) + "]";
    simdjson::padded_string one(raws[i]);
    od::document rdoc;
    od::object obj;
    if (inner.iterate(one).get(rdoc) != simdjson::SUCCESS ||
        rdoc.get_object().get(obj) != simdjson::SUCCESS)
      fail(path, "expected an object");
    request r;
    read_request(obj, r, path);
    // One canonical form for every SDK (docs/urls.md): the dedup key and the URL nodes
    // download. A request already in it keeps its bytes; the others are written anew.
    auto canonical = core::canonical_url(r.url);
    std::string json;
    if (!canonical.empty() && canonical != r.url) {
      r.url = std::move(canonical);
      append_json(json, r);
    } else {
      json.assign(raws[i]);
    }
    auto hash = request_hash(r);
    std::string url_hash;
    if (!r.fingerprint.empty() && !r.dont_filter && (r.method == "GET" || r.method == "HEAD") &&
        r.content.empty()) {
      // Whatever the pusher's fingerprint says, the same URL fetched the same way is the
      // same page (Scrapy's default fingerprint agrees): a redirect's target, which the
      // broker keys by URL, is not downloaded again when the spider links it too.
      request plain = r;
      plain.fingerprint.clear();
      url_hash = request_hash(plain);
    }
    out.push_back({std::move(hash), std::move(json), std::move(r.url), r.depth, std::move(url_hash)});
  }
  return {std::move(identity), std::move(out)};
}

std::vector<result> parse_results(std::string_view array_json) {
  simdjson::padded_string padded(array_json);
  od::document doc;
  auto arr = top_array(padded, doc, "results");
  std::vector<result> out;
  for (auto elem : arr) {
    od::object obj;
    auto path = "results[" + std::to_string(out.size()) + "]";
    if (elem.get_object().get(obj) != simdjson::SUCCESS)
      fail(path, "expected an object");
    result r;
    read_result(obj, r, path);
    out.push_back(std::move(r));
  }
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  const char* p = s.data();
  const char* end = p + s.size();
  const char* run = p;  // start of the bytes copied verbatim
  auto flush = [&](const char* upto) {
    out.append(run, static_cast<std::size_t>(upto - run));
  };
  while (p < end) {
    // Most of a page is plain ASCII: skip it a word at a time.
    while (end - p >= 8 && core::word_is_plain_json(core::load_word(p)))
      p += 8;
    if (p == end)
      break;
    auto c = static_cast<unsigned char>(*p);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++p;
      continue;
    }
    if (c >= 0x80) {
      // Validate one UTF-8 sequence; keep it when valid, else write U+FFFD.
      auto len = core::utf8_sequence_at(std::string_view(p, static_cast<std::size_t>(end - p)), 0);
      if (len) {
        p += len;
        continue;
      }
      flush(p);
      out += "\xEF\xBF\xBD";
      ++p;
      run = p;
      continue;
    }
    flush(p);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += hex_digits[c >> 4];
        out += hex_digits[c & 15];
    }
    ++p;
    run = p;
  }
  flush(p);
  out += '"';
}

namespace {
// Writers of one JSON object, field by field: `"key":` after the comma the object needs
// there (none right after its opening brace), then the value.
void key(std::string& out, std::string_view k) {
  if (out.back() != '{')
    out += ',';
  out += '"';
  out += k;
  out += "\":";
}

void field(std::string& out, std::string_view k, std::string_view v) {
  key(out, k);
  append_json_string(out, v);
}

void field(std::string& out, std::string_view k, std::int64_t v) {
  key(out, k);
  out += std::to_string(v);
}

void field(std::string& out, std::string_view k, const std::vector<redirect_hop>& hops) {
  key(out, k);
  out += '[';
  for (auto& h : hops) {
    if (out.back() != '[')
      out += ',';
    out += '{';
    field(out, "status", h.status);
    field(out, "url", h.url);
    out += '}';
  }
  out += ']';
}

void field(std::string& out, std::string_view k, const header_map& headers) {
  key(out, k);
  out += '{';
  for (auto& [name, value] : headers) {
    if (out.back() != '{')
      out += ',';
    append_json_string(out, name);  // names come from the wire: escaped like values
    out += ':';
    append_json_string(out, value);
  }
  out += '}';
}
} // namespace

void append_json(std::string& out, const request& r) {
  out += '{';
  field(out, "url", r.url);
  field(out, "method", r.method);
  field(out, "referer", r.referer);
  field(out, "origin", r.origin);
  field(out, "content", r.content);
  field(out, "depth", r.depth);
  field(out, "cycleTriedTimes", r.cycle_tried_times);
  field(out, "headers", r.headers);
  if (!r.redirected_from.empty()) {
    field(out, "redirectedFrom", r.redirected_from);
    field(out, "redirects", r.redirects);
  }
  if (!r.fingerprint.empty())
    field(out, "fingerprint", r.fingerprint);
  if (r.dont_filter) {
    key(out, "dontFilter");
    out += "true";
  }
  if (!r.proxy.empty())
    field(out, "proxy", r.proxy);
  if (!r.payload.empty())
    field(out, "payload", r.payload);
  out += '}';
}

void append_json(std::string& out, const result& r) {
  out += '{';
  if (r.result_id != 0)
    field(out, "resultId", r.result_id);
  field(out, "requestHash", r.request_hash);
  field(out, "url", r.url);
  field(out, "statusCode", r.status_code);
  field(out, "responseTime", r.response_time);
  field(out, "headers", r.headers);
  field(out, "content", r.content);
  if (!r.content_encoding.empty())
    field(out, "contentEncoding", r.content_encoding);
  field(out, "error", r.error);
  field(out, "depth", r.depth);
  if (r.deferred) {
    key(out, "deferred");
    out += "true";
  }
  if (r.retry_after_ms >= 0)
    field(out, "retryAfterMs", r.retry_after_ms);
  if (!r.final_url.empty())
    field(out, "finalUrl", r.final_url);
  if (!r.screenshot.empty())
    field(out, "screenshot", r.screenshot);
  if (!r.error_kind.empty())
    field(out, "errorKind", r.error_kind);
  if (r.size >= 0)
    field(out, "size", r.size);
  if (!r.redirects.empty())
    field(out, "redirects", r.redirects);
  if (!r.redirect_to.empty())
    field(out, "redirectTo", r.redirect_to);
  if (!r.redirected_from.empty())
    field(out, "redirectedFrom", r.redirected_from);
  if (!r.payload.empty())
    field(out, "payload", r.payload);
  if (!r.proxy.empty())
    field(out, "proxy", r.proxy);
  if (!r.proxy_errors.empty()) {
    key(out, "proxyErrors");
    out += '[';
    for (std::size_t i = 0; i < r.proxy_errors.size(); ++i) {
      if (i)
        out += ',';
      append_json_string(out, r.proxy_errors[i]);
    }
    out += ']';
  }
  if (!r.encoding.empty()) {
    field(out, "encoding", r.encoding);
    field(out, "encodingSource", r.encoding_source);
  }
  out += '}';
}

std::string encode_block_response(const block_response& b) {
  std::string out;
  std::size_t guess = 128;
  for (auto& r : b.results)
    guess += r.content.size() + r.url.size() + 256;
  out.reserve(guess);
  out += '{';
  field(out, "blockId", b.block_id);
  field(out, "identity", b.identity);
  field(out, "exception", b.exception);
  key(out, "results");
  out += '[';
  for (std::size_t i = 0; i < b.results.size(); ++i) {
    if (i)
      out += ',';
    append_json(out, b.results[i]);
  }
  out += "]}";
  return out;
}

} // namespace spiderhub::protocol::fast

namespace spiderhub::protocol {

// Whole bodies are checked here (every downloaded page): simdjson's validator picks the
// widest vector kernel of the CPU at run time, several times faster than a word-at-a-time
// loop on mostly-ASCII pages and far faster on non-Latin text.
bool is_valid_utf8(std::string_view s) {
  return simdjson::validate_utf8(s.data(), s.size());
}

} // namespace spiderhub::protocol
