# Installation and the Debian package: `cpack -G DEB` in the build directory makes
# spiderhub_<version>_<arch>.deb there (scripts/package-test builds, installs and removes
# it; docs/deploy.md). Included at the end of CMakeLists.txt.
#
#   /usr/bin/spiderhub
#   /etc/spiderhub/{broker,node}.yaml          conffiles, made from conf/*.yaml for a service
#   /lib/systemd/system/spiderhub-{broker,node}.service
#   /usr/share/man/man1/spiderhub.1.gz         when help2man is installed
#   /usr/share/doc/spiderhub/examples/*.yaml   conf/*.yaml as they are
include(GNUInstallDirs)

set(SPIDERHUB_PACKAGING_DIR ${CMAKE_CURRENT_SOURCE_DIR}/packaging)
set(SPIDERHUB_PACKAGING_OUT ${CMAKE_CURRENT_BINARY_DIR}/packaging)

# /etc/spiderhub/*.yaml: conf/*.yaml with state under /var/lib, logs to the journal and no
# secret (cmake/ServiceConfig.cmake).
set(service_configs)
foreach(kind broker node)
  set(out ${SPIDERHUB_PACKAGING_OUT}/etc/${kind}.yaml)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DKIND=${kind} -DIN=${CMAKE_CURRENT_SOURCE_DIR}/conf/${kind}.yaml
            -DOUT=${out} -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/ServiceConfig.cmake
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/conf/${kind}.yaml
            ${CMAKE_CURRENT_SOURCE_DIR}/cmake/ServiceConfig.cmake
    COMMENT "Making the service configuration ${kind}.yaml"
    VERBATIM)
  list(APPEND service_configs ${out})
endforeach()
add_custom_target(spiderhub_service_configs ALL DEPENDS ${service_configs})

# The man page, from `spiderhub --help` (help2man runs the binary: not in sanitizer trees).
find_program(HELP2MAN_PROGRAM help2man)
find_program(GZIP_PROGRAM gzip)
set(man_page ${SPIDERHUB_PACKAGING_OUT}/spiderhub.1.gz)
if(HELP2MAN_PROGRAM AND GZIP_PROGRAM AND NOT SPIDERHUB_SANITIZE)
  add_custom_command(OUTPUT ${man_page}
    COMMAND ${HELP2MAN_PROGRAM} --no-info --no-discard-stderr
            --include=${SPIDERHUB_PACKAGING_DIR}/man/spiderhub.h2m
            --output=${SPIDERHUB_PACKAGING_OUT}/spiderhub.1 $<TARGET_FILE:spiderhub>
    COMMAND ${GZIP_PROGRAM} -9nf ${SPIDERHUB_PACKAGING_OUT}/spiderhub.1
    DEPENDS spiderhub ${SPIDERHUB_PACKAGING_DIR}/man/spiderhub.h2m
    COMMENT "Making the man page spiderhub.1 (help2man)"
    VERBATIM)
  add_custom_target(spiderhub_man ALL DEPENDS ${man_page})
  install(FILES ${man_page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "help2man not found (or a sanitizer tree): the package has no man page")
endif()

install(TARGETS spiderhub RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Secrets go in there: root only (postinst keeps it so on upgrades).
install(FILES ${service_configs} DESTINATION /etc/spiderhub
  PERMISSIONS OWNER_READ OWNER_WRITE)
# Debian 12 (bookworm) packages ship their units in /lib (the same directory as /usr/lib
# on merged-/usr systems).
install(FILES ${SPIDERHUB_PACKAGING_DIR}/systemd/spiderhub-broker.service
              ${SPIDERHUB_PACKAGING_DIR}/systemd/spiderhub-node.service
  DESTINATION /lib/systemd/system)
install(FILES conf/broker.yaml conf/node.yaml conf/worker.yaml
  DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME spiderhub)
set(CPACK_PACKAGE_VENDOR spiderhub)
set(CPACK_PACKAGE_CONTACT "spiderhub maintainers <maintainers@users.noreply.r-seed-625b2edb.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "distributed crawler: broker, crawler node and tools")
set(CPACK_PACKAGE_DESCRIPTION "spiderhub runs crawl jobs over a fleet of nodes: a broker \
(HTTP API, SignalR hubs, cron scheduler, SQLite storage) leases blocks of requests to \
crawler nodes, which download them and can run application packages. Ships the \
spiderhub-broker and spiderhub-node systemd units (not enabled).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # the line tables alone are ~200 MB
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # spiderhub_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # library dependencies from dpkg-shlibdeps
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")  # postinst
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${SPIDERHUB_PACKAGING_DIR}/debian/conffiles  # the operator's edits survive upgrades
  ${SPIDERHUB_PACKAGING_DIR}/debian/postinst
  ${SPIDERHUB_PACKAGING_DIR}/debian/prerm
  ${SPIDERHUB_PACKAGING_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
