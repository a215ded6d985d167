#pragma once
// SignalR JSON hub client on top of ws_client: handshake, invocations with
// completions, server-to-client calls, keep-alive pings, and reconnection with
// exponential backoff and jitter. Used by the node agent and the worker SDK.
//
//   disconnected --connect--> handshaking --{}--> connected --close/error--> disconnected
//        ^                                                                   |
//        +----------------------- wait backoff (doubling, jittered) ---------+
//
// Several alternative URLs (brokers sharing one database, one active, the others standby
// answering 503): attempts go round the list. Within a round the next alternative is
// tried reconnect_initial (jittered) after the previous attempt started (and once it has
// ended); the backoff applies, and doubles, only after the last attempt of a round, so one
// round over N alternatives takes about (N - 1) * reconnect_initial + backoff. A round
// starts with the alternative after the one tried (or connected) last: after a connection
// that was up drops, its broker is tried last (it most likely died or stepped down). One
// alternative behaves exactly as a single URL always did.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace spiderhub::net {

class hub_client {
 public:
  using json = nlohmann::json;
  /// Completion callback: (result, error); error is empty on success.
  using completion_fn = std::function<void(json result, std::string error)>;
  /// Completion with the result as raw JSON text ("" when the server sent no result).
  using raw_completion_fn = std::function<void(std::string result_json, std::string error)>;
  /// Server-to-client method: receives the invocation's arguments array.
  using method_fn = std::function<void(const json& arguments)>;
  /// A method that takes its arguments as raw JSON array text (bulk calls decoded without
  /// a DOM).
  using raw_method_fn = std::function<void(std::string_view arguments_json)>;

  struct options {
    std::function<std::string()> url;    // called before every connect (fresh sign)
    // Alternatives instead of `url`: when set, url_at(i) is called before every connect to
    // alternative i (0 <= i < url_count), and `url` is not used.
    std::function<std::string(std::size_t index)> url_at;
    std::size_t url_count = 1;
    std::size_t first_url = 0;           // the alternative tried first
    std::chrono::milliseconds reconnect_initial{500};
    std::chrono::milliseconds reconnect_max{30000};
    std::chrono::milliseconds keepalive{15000};  // ping period
    std::chrono::milliseconds idle_timeout{60000};  // nothing received this long: reconnect
    std::chrono::milliseconds invoke_timeout{60000};
    std::size_t max_message_bytes = 64 << 20;
    std::string name = "hub";            // for log lines
    bool tls_verify = true;              // wss: check the broker's certificate ...
    std::string tls_ca_file;             // ... against this PEM bundle ("" = system store)
  };

  explicit hub_client(options opts);
  ~hub_client();
  hub_client(const hub_client&) = delete;
  hub_client& operator=(const hub_client&) = delete;

  /// Registers a server-to-client method; call before start().
  void on(const std::string& target, method_fn fn);
  void on_raw(const std::string& target, raw_method_fn fn);
  void on_connected(std::function<void()> fn);
  void on_disconnected(std::function<void(const std::string& reason)> fn);

  void start();
  void stop();
  bool connected() const;
  /// The alternative (index for url_at; 0 with a single url) of the connection that is up,
  /// or else of the attempt under way or made last.
  std::size_t current_url() const;

  /// Calls a hub method; `done` runs exactly once, on the client's thread, with the
  /// result or an error ("not connected", "connection lost", "timeout", server error).
  void invoke(const std::string& target, json arguments, completion_fn done);
  /// Same with the arguments already serialized as a JSON array and the result handed
  /// over as raw JSON text: the bulk calls (SaveBlockResponse, Poll) skip the DOM.
  void invoke_raw(const std::string& target, std::string arguments_json, raw_completion_fn done);
  /// Calls a hub method without asking for a completion.
  void send(const std::string& target, json arguments);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace spiderhub::net
