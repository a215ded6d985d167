# Makes /etc/spiderhub/{broker,node}.yaml of the .deb from conf/{broker,node}.yaml (run with
# cmake -DKIND=broker|node -DIN=conf/KIND.yaml -DOUT=FILE -P ServiceConfig.cmake): the same
# keys and comments, with the values a system service needs. Every edit must find its line
# exactly once, so a change of conf/*.yaml that would silently defeat one fails the build.
if(NOT KIND MATCHES "^(broker|node)$" OR NOT IN OR NOT OUT)
  message(FATAL_ERROR "usage: cmake -DKIND=broker|node -DIN=conf.yaml -DOUT=out.yaml -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
file(READ "${IN}" text)
set(unit "spiderhub-${KIND}")
set(state "/var/lib/${unit}")

# Replaces the one match of `regex` (a line: it starts with \n) with `replacement`.
function(edit regex replacement)
  string(REGEX MATCHALL "${regex}" found "${text}")
  list(LENGTH found n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "${IN}: expected one line matching '${regex}', found ${n}: update ${CMAKE_CURRENT_LIST_FILE}")
  endif()
  string(REGEX REPLACE "${regex}" "${replacement}" text "${text}")
  set(text "${text}" PARENT_SCOPE)
endfunction()

# Header: what differs from conf/KIND.yaml.
set(text "# /etc/spiderhub/${KIND}.yaml: configuration of ${unit}.service (spiderhub package).
# Restart the unit after editing. Lines marked [service] differ from the built-in defaults,
# for a service: files under ${state} (the unit's StateDirectory), logs to
# the journal (journalctl -u ${unit}), no secret until you set one.
# Every default: /usr/share/doc/spiderhub/examples/${KIND}.yaml.
#
${text}")

# The secret: empty, and how to make one.
if(KIND STREQUAL "broker")
  edit("\n  token: \"1234\"    " "
  # [service] No secret is shipped. \"\" turns authentication off, which the broker accepts
  # only while http.address is loopback. Before opening it, run `spiderhub token` and put
  # the secret here (and into /etc/spiderhub/node.yaml of every node).
  token: \"\"        ")
else()
  edit("\ntoken: \"1234\"    " "
# [service] No secret is shipped: run `spiderhub token` on the broker's host, put the secret
# in its /etc/spiderhub/broker.yaml (auth.token, or a node-role secret of auth.tokens) and
# here. \"\" connects without a sign, which only a broker without authentication accepts.
token: \"\"        ")
endif()

# Relative data/ paths -> the state directory (all of them, whatever the keys).
string(REGEX MATCHALL ": data/" found "${text}")
list(LENGTH found n)
if(n EQUAL 0)
  message(FATAL_ERROR "${IN}: no data/ path found: update ${CMAKE_CURRENT_LIST_FILE}")
endif()
string(REGEX REPLACE ": data/([^ \n]*)( *)#" ": ${state}/\\1 # [service]" text "${text}")
string(REGEX REPLACE ": data/([^ \n]*)" ": ${state}/\\1  # [service]" text "${text}")

# Logs: stdout/stderr only, which systemd hands to the journal.
edit("\n  file: \"\"[^\n]*" "
  file: \"\"                    # [service] \"\": the journal only (journalctl -u ${unit})")

if(KIND STREQUAL "node")
  # Packages run as the unprivileged user the package's postinst creates (the unit runs the
  # node as root, which refuses packages while run_as is empty).
  edit("\n  run_as: \"\"                     #" "
  # [service] spiderhub-app: a system user the package creates for this.
  run_as: spiderhub-app          #")
endif()

file(WRITE "${OUT}" "${text}")
