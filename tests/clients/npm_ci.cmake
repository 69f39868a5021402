# Installs the Node client's dependencies (sdk/node/package-lock.json) into
# DEST/node_modules with `npm ci`, from the npm registry. Skipped when the
# stamp left by the last install matches the lock file, node and npm, so a
# rerun of the tests costs nothing; a changed lock file reinstalls.
#
#   cmake -DNPM=... -DNODE=... -DSRC=<sdk/node> -DDEST=<dir> -P npm_ci.cmake
foreach(var NPM NODE SRC DEST)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "npm_ci.cmake: ${var} is not set")
  endif()
endforeach()

file(SHA256 "${SRC}/package-lock.json" lock_hash)
file(SHA256 "${SRC}/package.json" package_hash)
execute_process(COMMAND "${NODE}" --version OUTPUT_VARIABLE node_version
                OUTPUT_STRIP_TRAILING_WHITESPACE)
set(stamp_text "${lock_hash} ${package_hash} ${node_version} ${NPM}")
set(stamp "${DEST}/node_modules/.sbx-npm-ci.stamp")

if(EXISTS "${stamp}")
  file(READ "${stamp}" old_stamp)
  if(old_stamp STREQUAL stamp_text AND EXISTS "${DEST}/node_modules/@grpc/grpc-js/package.json"
     AND EXISTS "${DEST}/node_modules/@grpc/proto-loader/package.json")
    message(STATUS "node_modules up to date in ${DEST}")
    return()
  endif()
endif()

file(MAKE_DIRECTORY "${DEST}")
file(COPY_FILE "${SRC}/package.json" "${DEST}/package.json")
file(COPY_FILE "${SRC}/package-lock.json" "${DEST}/package-lock.json")
# --ignore-scripts: the dependencies need no install step (grpc-js is pure
# JavaScript), and nothing from the registry runs at install time.
execute_process(
  COMMAND "${NPM}" ci --ignore-scripts --no-audit --no-fund --loglevel=warn
  WORKING_DIRECTORY "${DEST}"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "npm ci in ${DEST} failed (${result})")
endif()
file(WRITE "${stamp}" "${stamp_text}")
message(STATUS "installed node_modules in ${DEST}")
