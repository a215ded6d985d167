#include "actors/gateway/packages.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "actors/gateway/gateway.hpp"
#include "actors/storage/storage_actor.hpp"
#include "core/digest.hpp"
#include "core/error.hpp"
#include "net/http_server.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::actors {
namespace {

namespace fs = std::filesystem;
using namespace spiderhub::protocol;
using json = nlohmann::json;

void reply_json(const responder_ptr& r, int status, const json& body) {
  net::http_response resp;
  resp.status = status;
  resp.body = body.dump();
  r->reply(std::move(resp));
}

void reply_error(const responder_ptr& r, int status, const std::string& code,
                 const std::string& message) {
  r->reply(error_response(status, code, message));
}

json package_json(const storage::package_row& p) {
  return {{"name", p.name},
          {"sha256", p.sha256},
          {"size", p.size},
          {"format", p.format},
          {"creationTime", p.creation_time}};
}

std::string file_of(const package_options& o, const std::string& sha, const std::string& format) {
  return (fs::path(o.dir) / (sha + "." + format)).string();
}

// Runs `fn(blocking_actor*)` on its own thread as a detached actor. `fn` is a spawn
// argument, not a capture: CAF 0.17 dereferences a null argument tuple for
// argument-less function actors (UBSan reports it).
template <class Fn> void detached(caf::actor_system& sys, Fn fn) {
  sys.spawn<caf::detached>([](caf::blocking_actor* b, Fn f) { f(b); }, std::move(fn));
}

// Synchronous storage read from a blocking actor; throws on a storage error.
template <class T> T read_sync(caf::blocking_actor* b, const caf::actor& storage, read_fn fn) {
  T out{};
  std::string failure;
  b->request(storage, caf::infinite, read_atom::value, std::move(fn))
    .receive([&](T& x) { out = std::move(x); },
             [&](caf::error& e) { failure = b->system().render(e); });
  if (!failure.empty())
    throw std::runtime_error("storage: " + failure);
  return out;
}

void write_sync(caf::blocking_actor* b, const caf::actor& storage, write_fn fn) {
  std::string failure;
  b->request(storage, caf::infinite, write_atom::value, std::move(fn))
    .receive([](bool) {}, [&](caf::error& e) { failure = b->system().render(e); });
  if (!failure.empty())
    throw std::runtime_error("storage: " + failure);
}

// Writes the bytes under a temporary name, fsyncs, renames into place.
void write_file_atomically(const std::string& path, std::string_view bytes) {
  auto tmp = path + ".tmp-" + core::new_guid();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      auto err = std::string(std::strerror(errno));
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::runtime_error("cannot write " + tmp + ": " + err);
    }
    done += static_cast<std::size_t>(n);
  }
  bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || ::rename(tmp.c_str(), path.c_str()) != 0) {
    auto err = std::string(std::strerror(errno));
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot store " + path + ": " + err);
  }
}

std::optional<storage::package_row> find_package(caf::blocking_actor* b, const caf::actor& storage,
                                                 const std::string& name) {
  return read_sync<std::optional<storage::package_row>>(b, storage, [name](storage::database& db) {
    return caf::make_message(storage::package_repository(db).find(name));
  });
}

// Removes the file of `sha` unless a package still points to it.
void drop_if_unused(caf::blocking_actor* b, const caf::actor& storage, const package_options& o,
                    const std::string& sha, const std::string& format) {
  bool used = read_sync<bool>(b, storage, [sha](storage::database& db) {
    return caf::make_message(storage::package_repository(db).sha_in_use(sha));
  });
  if (!used) {
    std::error_code ec;
    fs::remove(file_of(o, sha, format), ec);
  }
}

} // namespace

bool valid_package_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || !std::isalnum(static_cast<unsigned char>(name[0])))
    return false;
  for (unsigned char c : name)
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-')
      return false;
  return true;
}

void put_package(caf::actor_system& sys, caf::actor storage, package_options opts,
                 std::string name, std::shared_ptr<const net::http_request> req,
                 responder_ptr r) {
  if (!valid_package_name(name))
    return reply_error(r, 400, "invalid",
                       "package name '" + name +
                         "' must be 1-128 characters of letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit");
  if (req->body.empty())
    return reply_error(r, 400, "invalid", "package body is empty: send the .zip or .tar.gz bytes");
  if (static_cast<std::int64_t>(req->body.size()) > opts.max_bytes)
    return reply_error(r, 413, "body_too_large",
                       "package is " + std::to_string(req->body.size()) +
                         " bytes, the limit (packages.max_bytes) is " +
                         std::to_string(opts.max_bytes));
  detached(sys, [=](caf::blocking_actor* b) {
    try {
      const auto& body = req->body;
      auto summary = core::check_archive(body, opts.limits);
      storage::package_row row;
      row.name = name;
      row.sha256 = core::sha256_hex(body);
      row.size = static_cast<std::int64_t>(body.size());
      row.format = core::format_name(summary.format);
      std::error_code ec;
      fs::create_directories(opts.dir, ec);
      auto path = file_of(opts, row.sha256, row.format);
      if (!fs::exists(path, ec))
        write_file_atomically(path, body);
      auto previous = find_package(b, storage, name);
      write_sync(b, storage, [row](storage::database& db) {
        storage::package_repository(db).upsert(row);
      });
      if (previous && previous->sha256 != row.sha256)
        drop_if_unused(b, storage, opts, previous->sha256, previous->format);
      spdlog::info("api: package {} stored: {} bytes, {}, sha256 {}, {} entries", name, row.size,
                   row.format, row.sha256, summary.entries);
      auto out = package_json(row);
      out["entries"] = summary.entries;
      out["unpackedBytes"] = summary.unpacked_bytes;
      reply_json(r, previous ? 200 : 201, out);
    } catch (const core::input_error& e) {
      spdlog::warn("api: package {} refused: {}", name, e.what());
      reply_error(r, 400, "invalid", e.what());
    } catch (const std::exception& e) {
      spdlog::error("api: package {} not stored: {}", name, e.what());
      reply_error(r, 503, "unavailable", std::string("package not stored: ") + e.what());
    }
  });
}

void get_package_file(caf::actor_system& sys, caf::actor storage, package_options opts,
                      std::string name, responder_ptr r) {
  detached(sys, [=](caf::blocking_actor* b) {
    try {
      auto row = find_package(b, storage, name);
      if (!row)
        return reply_error(r, 404, "not_found", "package '" + name + "' not found");
      std::ifstream in(file_of(opts, row->sha256, row->format), std::ios::binary);
      if (!in)
        return reply_error(r, 500, "internal",
                           "package '" + name + "' is recorded but its file is missing");
      std::ostringstream ss;
      ss << in.rdbuf();
      net::http_response resp;
      resp.content_type = row->format == "zip" ? "application/zip" : "application/gzip";
      resp.body = ss.str();
      resp.headers.emplace_back("X-Sha256", row->sha256);
      r->reply(std::move(resp));
    } catch (const std::exception& e) {
      reply_error(r, 503, "unavailable", e.what());
    }
  });
}

void get_package_info(caf::actor_system& sys, caf::actor storage, std::string name,
                      responder_ptr r) {
  detached(sys, [=](caf::blocking_actor* b) {
    try {
      auto row = find_package(b, storage, name);
      if (!row)
        return reply_error(r, 404, "not_found", "package '" + name + "' not found");
      reply_json(r, 200, package_json(*row));
    } catch (const std::exception& e) {
      reply_error(r, 503, "unavailable", e.what());
    }
  });
}

void list_packages(caf::actor_system& sys, caf::actor storage, responder_ptr r) {
  detached(sys, [=](caf::blocking_actor* b) {
    try {
      auto rows = read_sync<std::vector<storage::package_row>>(b, storage, [](storage::database& db) {
        return caf::make_message(storage::package_repository(db).list());
      });
      json out = json::array();
      for (auto& p : rows)
        out.push_back(package_json(p));
      reply_json(r, 200, out);
    } catch (const std::exception& e) {
      reply_error(r, 503, "unavailable", e.what());
    }
  });
}

void delete_package(caf::actor_system& sys, caf::actor storage, package_options opts,
                    std::string name, responder_ptr r) {
  detached(sys, [=](caf::blocking_actor* b) {
    try {
      auto row = find_package(b, storage, name);
      if (!row)
        return reply_error(r, 404, "not_found", "package '" + name + "' not found");
      write_sync(b, storage, [name](storage::database& db) {
        storage::package_repository(db).remove(name);
      });
      drop_if_unused(b, storage, opts, row->sha256, row->format);
      spdlog::info("api: package {} deleted", name);
      reply_json(r, 200, {{"name", name}, {"deleted", true}});
    } catch (const std::exception& e) {
      reply_error(r, 503, "unavailable", e.what());
    }
  });
}

} // namespace spiderhub::actors
