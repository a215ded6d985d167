#pragma once
// A text pattern searched in response bodies (the job property ChangeIpPattern, the seed's
// BlockDto.ChangeIpPattern): checked when the job is created, matched by the node. Pure code.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// GCC 12 with -fsanitize=address reports -Wmaybe-uninitialized inside <regex> itself
// (false positive in _NFA::_M_insert_*); keep SPIDERHUB_SANITIZE + WERROR builds green.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop
#else
#include <regex>
#endif

namespace spiderhub::core {

/// The block's changeIpPattern. Plain text (optionally "a|b|c") is searched with
/// string_view::find; anything else with std::regex. libstdc++'s default (DFS) regex
/// executor recurses once per input character and overflows an 8 MB stack on bodies of
/// ~16 KB with patterns like "(a|b)*", so we ask for its BFS executor, which runs in
/// bounded stack but rejects back-references (such a pattern is reported as invalid).
class text_pattern {
public:
  /// Empty pattern: no matcher. Returns an error text for unusable patterns.
  std::string compile(const std::string& pattern) {
    literals_.clear();
    re_.reset();
    if (pattern.empty())
      return {};
    if (pattern.find_first_of("\\^$.*+?()[]{}") == std::string::npos) {
      std::string_view rest = pattern;
      while (true) {
        auto bar = rest.find('|');
        literals_.emplace_back(rest.substr(0, bar));
        if (bar == std::string_view::npos)
          break;
        rest.remove_prefix(bar + 1);
      }
      return {};
    }
    try {
      auto flags = std::regex::ECMAScript | std::regex::nosubs;
#ifdef __GLIBCXX__
      flags |= std::regex_constants::__polynomial;
#endif
      re_.emplace(pattern, flags);
    } catch (const std::regex_error& e) {
      re_.reset();
      return e.what();
    }
    return {};
  }

  bool empty() const { return literals_.empty() && !re_; }

  bool matches(std::string_view body) const {
    for (const auto& lit : literals_)
      if (body.find(lit) != std::string_view::npos)
        return true;
    if (!re_)
      return false;
#ifndef __GLIBCXX__
    // Without the bounded-stack executor only a prefix is searched (see above).
    body = body.substr(0, 4096);
#endif
    return std::regex_search(body.data(), body.data() + body.size(), *re_);
  }

private:
  std::vector<std::string> literals_;
  std::optional<std::regex> re_;
};

/// Why `pattern` cannot be used ("" when it can, and for the empty pattern).
std::string pattern_problem(const std::string& pattern);

} // namespace spiderhub::core
