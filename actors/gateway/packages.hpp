#pragma once
// Application packages over HTTP: upload (PUT /api/v1.0/packages/{name}), list and
// metadata (GET /api/v1.0/packages[/{name}]), delete, and the bytes for nodes
// (GET /packages/{name}). Archive checks, hashing and file I/O run in a detached actor
// per request, so a 64 MB upload never stalls the api actor.
//
// Files live in `dir` as <sha256>.<format>, written to a temporary name, fsynced and
// renamed, then recorded in the Package table; a file no package points to any more is
// removed.
#include <memory>
#include <string>

#include "core/archive.hpp"
#include "protocol/messages.hpp"

namespace spiderhub::net {
class http_responder;
}

namespace spiderhub::actors {

struct package_options {
  std::string dir = "data/packages";
  std::int64_t max_bytes = 64 << 20;
  core::archive_limits limits;
};

using responder_ptr = std::shared_ptr<net::http_responder>;

/// Package names: 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit.
bool valid_package_name(const std::string& name);

void put_package(caf::actor_system& sys, caf::actor storage, package_options opts,
                 std::string name, std::shared_ptr<const net::http_request> req, responder_ptr r);
void get_package_file(caf::actor_system& sys, caf::actor storage, package_options opts,
                      std::string name, responder_ptr r);
void get_package_info(caf::actor_system& sys, caf::actor storage, std::string name,
                      responder_ptr r);
void list_packages(caf::actor_system& sys, caf::actor storage, responder_ptr r);
void delete_package(caf::actor_system& sys, caf::actor storage, package_options opts,
                    std::string name, responder_ptr r);

} // namespace spiderhub::actors
