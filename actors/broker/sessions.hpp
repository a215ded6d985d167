#pragma once
// Session actors: one per hub connection, alive as long as the connection.
//
// node session:   handshaking --handshake--> registered --Heartbeat/SaveBlockResponse--> ...
//                 registered --closed | 3 heartbeats missed--> down (leases released, offline)
// worker session: handshaking --handshake--> serving Push/Poll/Ack/Complete --closed--> down
#include <chrono>

#include "net/http_server.hpp"
#include "protocol/messages.hpp"

namespace spiderhub::actors {

/// Actors a session talks to.
struct broker_peers {
  caf::actor storage;
  caf::actor dispatcher;
  caf::actor jobs;  // job manager
};

struct session_options {
  std::chrono::milliseconds heartbeat_interval{5000};
  int missed_heartbeats = 3;
  std::chrono::milliseconds keepalive{15000};  // server ping period
  std::size_t max_record_bytes = 16 << 20;
  std::size_t max_write_queue_bytes = 64 << 20;  // the connection is cut beyond it (http_server)
  std::size_t max_poll_bytes = 4 << 20;          // result bytes of one Poll reply (one result at least)
};

caf::actor spawn_node_session(caf::actor_system& sys, net::ws_ptr conn, protocol::node_info info,
                              broker_peers peers, session_options opts);
caf::actor spawn_worker_session(caf::actor_system& sys, net::ws_ptr conn,
                                std::string full_class_name, broker_peers peers,
                                session_options opts);

} // namespace spiderhub::actors
