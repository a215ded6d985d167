#pragma once
// The pure half of `spiderhub console`: command-line and REPL parsing, and turning the
// inspector's JSON replies into aligned tables for people. No CAF, no I/O, so it is
// unit-tested directly (tests/actors/test_console.cpp); nodes/console_main.cpp does the
// connecting, the requests and the REPL around it.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace spiderhub::console {

/// HOST:PORT of the broker's inspector; "[::1]:4242" for IPv6 literals.
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
};

/// Parses HOST:PORT; throws core::input_error naming what is wrong.
endpoint parse_endpoint(const std::string& text);

/// One line of the REPL or the positional arguments of a one-shot call.
struct command_line {
  std::string command;   // "" for an empty line
  std::string argument;  // "" when none
};

/// Splits on blanks and checks the command against the inspector's command table and the
/// console's own `help` and `quit`: throws core::input_error for an unknown command, a
/// missing required argument or too many words.
command_line parse_command(const std::vector<std::string>& words);
command_line parse_command(const std::string& line);

/// True for the commands the console answers itself (help, quit).
bool is_local_command(const std::string& command);

/// Command names for tab completion: the inspector's plus help and quit, sorted.
std::vector<std::string> command_names();

/// Help text of the REPL and of one-shot `help` (every command with its argument).
std::string help_text();

/// An aligned text table: columns padded to their widest cell (UTF-8 aware), two
/// blanks apart, numbers right-aligned when `right[i]` is set, no trailing blanks.
struct table {
  std::vector<std::string> headers;
  std::vector<bool> right;  // per column; missing entries mean left-aligned
  std::vector<std::vector<std::string>> rows;
  std::string render() const;
};

/// Display width of UTF-8 text (code points; every code point counts as one column).
std::size_t display_width(const std::string& text);

/// Checks an inspector reply envelope: returns "" when the console can read it, else a
/// message for people (not JSON, or another inspector protocol version).
std::string check_reply(const nlohmann::json& reply, int expected_version);

/// Text for people of a successful reply (its "command" decides the layout), or of an
/// error reply ("error (code): message").
std::string render_reply(const nlohmann::json& reply);

} // namespace spiderhub::console
