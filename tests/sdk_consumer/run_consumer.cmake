# Script behind the sdk_consumer test (cmake -P). Inputs: SBX_BUILD_DIR,
# CONSUMER_SOURCE_DIR, WORK_DIR, CMAKE_GENERATOR.
foreach(var SBX_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR CMAKE_GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
  endif()
endforeach()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sdk_consumer: ${step} failed (${rc})")
  endif()
endfunction()

run(install ${CMAKE_COMMAND} --install ${SBX_BUILD_DIR} --component sdk
    --prefix ${prefix})
foreach(file include/sbx/client.h include/sbx/version.h
        include/sbx/v1/sandbox.pb.h include/sbx/v1/sandbox.grpc.pb.h)
  if(NOT EXISTS ${prefix}/${file})
    message(FATAL_ERROR "sdk_consumer: ${file} was not installed")
  endif()
endforeach()
run(configure ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${build}
    -G ${CMAKE_GENERATOR} -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_BUILD_TYPE=Release)
run(build ${CMAKE_COMMAND} --build ${build} -j2)
run(run ${build}/sdk_consumer)
