#include "actors/broker/sessions.hpp"

#include <spdlog/spdlog.h>

#include "net/hub_peer.hpp"
#include "protocol/json_codec.hpp"
#include "storage/repositories.hpp"

namespace spiderhub::actors {
namespace {

using namespace spiderhub::protocol;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;
namespace sr = protocol::signalr;

// Shared by both session kinds: the hub peer and what every session needs.
struct session_base {
  std::unique_ptr<net::hub_peer> peer;
  broker_peers peers;
  session_options opts;
  std::string conn_id;
  bool closing = false;
  std::uint64_t invocations = 0;
};

template <class Self> void close_session(Self self, const std::string& reason) {
  auto& st = self->state;
  if (!st.closing) {
    st.closing = true;
    st.peer->close(reason);
  }
}

// Reports a failed request to the caller as a completion error.
template <class Self>
void reply_error(Self self, const std::string& invocation_id, const caf::error& err) {
  auto text = self->system().render(err);
  self->state.peer->fail(invocation_id, text);
}

// An invocation from a peer. Arguments are parsed into a DOM for every method but the
// bulk ones (SaveBlockResponse, Push), which keep their raw text for the fast decoder.
struct hub_call : sr::invocation {
  std::string raw_arguments;
};

const json& arg(const sr::invocation& inv, std::size_t i) {
  if (inv.arguments.size() <= i)
    throw core::input_error(inv.target + ": expected " + std::to_string(i + 1) +
                            " argument(s), got " + std::to_string(inv.arguments.size()));
  return inv.arguments[i];
}

std::string string_arg(const sr::invocation& inv, std::size_t i, const char* name) {
  auto& v = arg(inv, i);
  if (!v.is_string() || v.get_ref<const std::string&>().empty())
    throw core::input_error(inv.target + ": argument '" + name + "' must be a non-empty string");
  return v.get<std::string>();
}

// Feeds a frame through the hub peer; protocol violations close the connection.
template <class Self, class Handler>
void on_frame(Self self, const std::string& text, const char* kind, const std::string& who,
              Handler handle) {
  auto& st = self->state;
  if (st.closing)
    return;
  std::vector<protocol::fast::raw_message> calls;
  try {
    calls = st.peer->feed(text);
  } catch (const std::exception& e) {
    spdlog::warn("{} session {}: protocol error, closing: {}", kind, who, e.what());
    close_session(self, std::string("protocol error: ") + e.what());
    return;
  }
  if (st.peer->client_closed()) {
    close_session(self, "client closed");
    return;
  }
  for (auto& m : calls) {
    ++st.invocations;
    hub_call inv;
    inv.invocation_id = std::move(m.invocation_id);
    inv.target = std::move(m.target);
    try {
      if (inv.target == "SaveBlockResponse" || inv.target == "Push") {
        inv.raw_arguments = std::move(m.arguments);
      } else {
        inv.arguments = json::parse(m.arguments);
      }
      handle(inv);
    } catch (const std::exception& e) {
      // Bad arguments: answer the call with the error, keep the connection.
      spdlog::warn("{} session {}: {} rejected: {}", kind, who, inv.target, e.what());
      if (inv.invocation_id)
        st.peer->fail(*inv.invocation_id, e.what());
    }
  }
}

// ---- node session ------------------------------------------------------------

struct node_session_state : session_base {
  node_info info;
  steady::time_point last_heard = steady::now();  // latest call of the node (any method)
  steady::time_point last_ping = steady::now();
  std::uint64_t heartbeats = 0, blocks_pushed = 0;
  bool down = false;  // node_down sent and the node marked offline
  static inline const char* name = "node_session";
};

using node_ptr = caf::stateful_actor<node_session_state>*;

// The node is gone for the broker: leases released, offline in the database. Done as soon
// as the session decides to close (missed heartbeats, protocol error), not only when the
// close handshake ends: a hung peer would otherwise stay online for the whole close
// timeout. Idempotent.
void node_down(node_ptr self) {
  auto& s = self->state;
  if (s.down)
    return;
  s.down = true;
  self->send(s.peers.dispatcher, node_down_atom::value, s.info.node_id, caf::actor{self});
  self->send(s.peers.jobs, node_down_atom::value, s.info.node_id, caf::actor{self});
  auto node_id = s.info.node_id;
  caf::anon_send(s.peers.storage, write_atom::value, write_fn([node_id](storage::database& db) {
                   storage::node_repository(db).set_online(node_id, false);
                 }));
}

void handle_node_call(node_ptr self, hub_call& inv) {
  auto& st = self->state;
  const auto& node_id = st.info.node_id;
  auto id = inv.invocation_id;
  // Any call proves the node alive: on a slow link its heartbeat may queue behind a
  // large SaveBlockResponse for longer than the missed-heartbeat window.
  st.last_heard = steady::now();
  if (inv.target == "Heartbeat") {
    auto hb = decode<heartbeat>(arg(inv, 0), "Heartbeat.arguments[0]");
    ++st.heartbeats;
    caf::anon_send(st.peers.storage, write_atom::value,
               write_fn([node_id, hb](storage::database& db) {
                 storage::node_repository repo(db);
                 storage::node_status_row s;
                 s.node_id = node_id;
                 s.process_count = hb.process_count;
                 s.cpu = hb.cpu;
                 s.free_memory = hb.free_memory;
                 repo.add_status(s);
                 // Not just touch(): a stale session of this node (half-open TCP closed
                 // later) may have marked it offline after this session registered.
                 repo.set_online(node_id, true);
               }));
    self->send(st.peers.jobs, heartbeat_atom::value, node_id, hb);
    if (!id)
      return;
    self->request(st.peers.dispatcher, caf::infinite, lease_atom::value, node_id, hb.free_slots)
      .then([=](const std::string& blocks) { self->state.peer->complete_raw(*id, blocks); },
            [=](caf::error& err) { reply_error(self, *id, err); });
  } else if (inv.target == "SaveBlockResponse") {
    auto resp = protocol::fast::parse_block_response(inv.raw_arguments);
    self->request(st.peers.dispatcher, caf::infinite, save_atom::value, node_id, std::move(resp))
      .then(
        [=](bool ok) {
          if (id)
            self->state.peer->complete(*id, ok);
        },
        [=](caf::error& err) {
          if (id)
            reply_error(self, *id, err);
        });
  } else if (inv.target == "ApplicationExited") {
    auto exited = decode<application_exited>(arg(inv, 0), "ApplicationExited.arguments[0]");
    self->send(st.peers.jobs, app_exited_atom::value, node_id, exited);
    if (id)
      st.peer->complete(*id, true);
  } else if (inv.target == "ApplicationStarted") {
    auto started = decode<application_started>(arg(inv, 0), "ApplicationStarted.arguments[0]");
    self->send(st.peers.jobs, app_started_atom::value, node_id, started);
    if (id)
      st.peer->complete(*id, true);
  } else if (inv.target == "ApplicationLog") {
    auto log = decode<application_log>(arg(inv, 0), "ApplicationLog.arguments[0]");
    self->send(st.peers.jobs, app_log_atom::value, node_id, std::move(log));
    if (id)
      st.peer->complete(*id, true);
  } else {
    throw core::input_error("unknown method '" + inv.target + "' on the node hub");
  }
}

caf::behavior node_session(node_ptr self, net::ws_ptr conn, node_info info, broker_peers peers,
                           session_options opts) {
  auto& st = self->state;
  st.peer = std::make_unique<net::hub_peer>(conn, opts.max_record_bytes);
  st.peers = peers;
  st.opts = opts;
  st.conn_id = std::to_string(conn->id());
  st.info = info;
  spdlog::info("node {} connected from {} (group {}, os {}, {} cpus, {} MB)", info.node_id,
               info.ip, info.group, info.os, info.processor_count, info.memory);
  caf::anon_send(peers.storage, write_atom::value, write_fn([info](storage::database& db) {
               storage::node_row n;
               n.id = info.node_id;
               n.node_type = info.node_type;
               n.ip = info.ip;
               n.processor_count = info.processor_count;
               n.group = info.group;
               n.os = info.os;
               n.memory = info.memory;
               n.is_online = true;
               storage::node_repository(db).upsert(n);
             }));
  self->send(peers.dispatcher, node_up_atom::value, info.node_id, caf::actor{self},
             info.max_blocks, info.render_tabs, info.change_ip);
  self->send(peers.jobs, node_up_atom::value, info.node_id, caf::actor{self}, info);
  auto check_every = std::min(opts.keepalive, opts.heartbeat_interval);
  self->delayed_send(self, check_every, tick_atom::value);
  return {
    [=](frame_atom, const std::string& text) {
      on_frame(self, text, "node", self->state.info.node_id,
               [=](hub_call& inv) { handle_node_call(self, inv); });
      if (self->state.closing)
        node_down(self);
    },
    [=](closed_atom, const std::string& reason) {
      spdlog::info("node {} disconnected: {}", self->state.info.node_id, reason);
      node_down(self);
      self->quit();
    },
    [=](receive_atom, const std::string& block_json) {
      ++self->state.blocks_pushed;
      self->state.peer->invoke_raw("Receive", "[" + block_json + "]");
    },
    [=](run_app_atom, const run_application& r) {
      self->state.peer->invoke("RunApplication", json::array({to_json(r)}));
    },
    [=](exit_atom, const std::string& identity) {
      self->state.peer->invoke("Exit", json::array({identity}));
    },
    [=](tick_atom) {
      auto& s = self->state;
      if (s.closing)
        return;
      auto now = steady::now();
      auto limit = s.opts.heartbeat_interval * s.opts.missed_heartbeats;
      if (now - s.last_heard > limit) {
        spdlog::warn("node {}: nothing heard for {} ms (missed heartbeats), closing",
                     s.info.node_id, limit.count());
        close_session(self, "missed heartbeats");
        node_down(self);
        return;
      }
      if (now - s.last_ping >= s.opts.keepalive) {
        s.last_ping = now;
        s.peer->ping();
      }
      self->delayed_send(self, std::min(s.opts.keepalive, s.opts.heartbeat_interval),
                         tick_atom::value);
    },
    [=](stats_atom) -> std::string {
      auto& s = self->state;
      return json{{"kind", "node"}, {"nodeId", s.info.node_id}, {"heartbeats", s.heartbeats},
                  {"blocksPushed", s.blocks_pushed}, {"invocations", s.invocations},
                  {"queuedBytes", s.peer->connection()->queued_bytes()},
                  {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

// ---- worker session ------------------------------------------------------------

struct worker_session_state : session_base {
  std::string full_class_name;
  std::size_t polls_out = 0;         // Polls at the dispatcher, their replies not queued yet
  std::uint64_t polls_deferred = 0;  // answered [] because the write queue had no room
  steady::time_point last_ping = steady::now();
  static inline const char* name = "worker_session";
};

using worker_ptr = caf::stateful_actor<worker_session_state>*;

void handle_worker_call(worker_ptr self, hub_call& inv) {
  auto& st = self->state;
  auto id = inv.invocation_id;
  auto on_error = [=](caf::error& err) {
    if (id)
      reply_error(self, *id, err);
  };
  if (inv.target == "Push") {
    auto [identity, requests] = protocol::fast::parse_push(inv.raw_arguments);
    self->request(st.peers.dispatcher, caf::infinite, push_atom::value, std::move(identity),
                  std::move(requests))
      .then(
        [=](std::int32_t n) {
          if (id)
            self->state.peer->complete(*id, n);
        },
        on_error);
  } else if (inv.target == "Poll") {
    auto identity = string_arg(inv, 0, "identity");
    auto& max_arg = arg(inv, 1);
    if (!max_arg.is_number_integer() || max_arg.get<std::int64_t>() < 1)
      throw core::input_error("Poll: argument 'max' must be a positive integer");
    auto max = static_cast<std::int32_t>(std::min<std::int64_t>(max_arg.get<std::int64_t>(),
                                                                1 << 30));
    // Optional third argument: how long the broker may hold a Poll that finds nothing new
    // (long poll); without it, or 0, an empty Poll is answered at once.
    std::int32_t wait_ms = 0;
    if (inv.arguments.size() > 2) {
      auto& wait_arg = inv.arguments[2];
      if (!wait_arg.is_number_integer() || wait_arg.get<std::int64_t>() < 0 ||
          wait_arg.get<std::int64_t>() > max_poll_wait_ms)
        throw core::input_error("Poll: argument 'waitMs' must be an integer from 0 to " +
                                std::to_string(max_poll_wait_ms));
      wait_ms = static_cast<std::int32_t>(wait_arg.get<std::int64_t>());
    }
    // Optional fourth argument: the worker's own byte budget for the reply.
    auto max_bytes = static_cast<std::int64_t>(st.opts.max_poll_bytes);
    if (inv.arguments.size() > 3) {
      auto& bytes_arg = inv.arguments[3];
      if (!bytes_arg.is_number_integer() || bytes_arg.get<std::int64_t>() < 1)
        throw core::input_error("Poll: argument 'maxBytes' must be a positive integer");
      max_bytes = std::min(max_bytes, bytes_arg.get<std::int64_t>());
    }
    // What this connection may still queue: every Poll answered but not yet written counts
    // as its largest reply (its budget, or one result up to a whole hub message), so the
    // broker never queues past max_write_queue_bytes on its own account. A worker that does
    // not read gets empty answers until it does.
    auto largest = std::max(st.opts.max_poll_bytes, st.opts.max_record_bytes);
    auto queued = st.peer->connection()->queued_bytes();
    if (queued + (st.polls_out + 1) * largest > st.opts.max_write_queue_bytes) {
      ++st.polls_deferred;
      if (id)
        st.peer->complete_raw(*id, "[]");
      return;
    }
    ++st.polls_out;
    self->request(st.peers.dispatcher, caf::infinite, poll_atom::value, identity, max, wait_ms,
                  max_bytes, caf::actor{self})
      .then(
        [=](const std::string& results) {
          --self->state.polls_out;
          if (id)
            self->state.peer->complete_raw(*id, results);
        },
        [=](caf::error& err) {
          --self->state.polls_out;
          on_error(err);
        });
  } else if (inv.target == "Ack") {
    auto identity = string_arg(inv, 0, "identity");
    auto& ids_arg = arg(inv, 1);
    if (!ids_arg.is_array())
      throw core::input_error("Ack: argument 'resultIds' must be an array of integers");
    std::vector<std::int64_t> ids;
    for (auto& v : ids_arg) {
      if (!v.is_number_integer())
        throw core::input_error("Ack: argument 'resultIds' must be an array of integers");
      ids.push_back(v.get<std::int64_t>());
    }
    self->request(st.peers.dispatcher, caf::infinite, ack_atom::value, identity, std::move(ids))
      .then(
        [=](bool ok) {
          if (id)
            self->state.peer->complete(*id, ok);
        },
        on_error);
  } else if (inv.target == "Complete") {
    auto identity = string_arg(inv, 0, "identity");
    self->request(st.peers.dispatcher, caf::infinite, complete_atom::value, identity)
      .then(
        [=](bool ok) {
          if (id)
            self->state.peer->complete(*id, ok);
        },
        on_error);
  } else {
    throw core::input_error("unknown method '" + inv.target + "' on the worker hub");
  }
}

caf::behavior worker_session(worker_ptr self, net::ws_ptr conn, std::string full_class_name,
                             broker_peers peers, session_options opts) {
  auto& st = self->state;
  st.peer = std::make_unique<net::hub_peer>(conn, opts.max_record_bytes);
  st.peers = peers;
  st.opts = opts;
  st.conn_id = std::to_string(conn->id());
  st.full_class_name = full_class_name;
  spdlog::info("worker {} connected (connection {})", full_class_name, st.conn_id);
  caf::anon_send(peers.storage, write_atom::value,
             write_fn([full_class_name, conn_id = st.conn_id](storage::database& db) {
               storage::worker_repository(db).connected(full_class_name, conn_id);
             }));
  self->send(peers.jobs, worker_up_atom::value, full_class_name, caf::actor{self});
  self->delayed_send(self, opts.keepalive, tick_atom::value);
  return {
    [=](frame_atom, const std::string& text) {
      on_frame(self, text, "worker", self->state.full_class_name,
               [=](hub_call& inv) { handle_worker_call(self, inv); });
    },
    [=](closed_atom, const std::string& reason) {
      auto& s = self->state;
      spdlog::info("worker {} (connection {}) disconnected: {}", s.full_class_name, s.conn_id,
                   reason);
      self->send(s.peers.jobs, worker_down_atom::value, s.full_class_name, caf::actor{self});
      caf::anon_send(s.peers.storage, write_atom::value,
                 write_fn([conn_id = s.conn_id](storage::database& db) {
                   storage::worker_repository(db).disconnected(conn_id);
                 }));
      self->quit();
    },
    [=](run_atom, const worker_run& r) {
      // A worker with one run may be waiting in a long Poll on it: answer that Poll now so
      // the worker gets to the new run without waiting out the Poll.
      self->send(self->state.peers.dispatcher, poll_wake_atom::value, caf::actor{self});
      self->state.peer->invoke("Run", json::array({to_json(r)}));
    },
    [=](exit_atom, const std::string& identity) {
      self->state.peer->invoke("Exit", json::array({identity}));
    },
    [=](tick_atom) {
      auto& s = self->state;
      if (s.closing)
        return;
      s.peer->ping();
      self->delayed_send(self, s.opts.keepalive, tick_atom::value);
    },
    [=](stats_atom) -> std::string {
      auto& s = self->state;
      return json{{"kind", "worker"}, {"fullClassName", s.full_class_name},
                  {"invocations", s.invocations}, {"pollsDeferred", s.polls_deferred},
                  {"queuedBytes", s.peer->connection()->queued_bytes()},
                  {"mailbox", self->mailbox().size()}}
        .dump();
    },
  };
}

} // namespace

caf::actor spawn_node_session(caf::actor_system& sys, net::ws_ptr conn, node_info info,
                              broker_peers peers, session_options opts) {
  return sys.spawn(node_session, std::move(conn), std::move(info), std::move(peers), opts);
}

caf::actor spawn_worker_session(caf::actor_system& sys, net::ws_ptr conn,
                                std::string full_class_name, broker_peers peers,
                                session_options opts) {
  return sys.spawn(worker_session, std::move(conn), std::move(full_class_name),
                   std::move(peers), opts);
}

} // namespace spiderhub::actors
