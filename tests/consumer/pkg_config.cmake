# Builds tests/consumer/main.cpp the way a Makefile uses qkv.pc, then runs it:
#   c++ -std=c++17 $CXX_FLAGS main.cpp $(pkg-config --cflags --libs qkv)
# as the README shows (qkv.pc cannot ask for a language standard; clang++ 14 defaults to C++14).
# with PKG_CONFIG_PATH at the scratch install prefix. Eigen's -I from eigen3.pc becomes
# -isystem (as CMake's Eigen3::Eigen target gives), so that the strict warnings are about
# qkv's code and not Eigen's. Run by tests/CMakeLists.txt as
#   cmake -DPKG_CONFIG=... -DPREFIX=... -DCXX=... -DCXX_FLAGS=... -DSOURCE=... -DOUTPUT=...
#         -DEXPECTED_VERSION=... -P pkg_config.cmake
include(GNUInstallDirs)
set(ENV{PKG_CONFIG_PATH} "${PREFIX}/${CMAKE_INSTALL_DATADIR}/pkgconfig")

function(pkg_config var)
  execute_process(COMMAND "${PKG_CONFIG}" ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "pkg-config ${ARGN} failed (PKG_CONFIG_PATH=$ENV{PKG_CONFIG_PATH}): ${err}")
  endif()
  separate_arguments(out UNIX_COMMAND "${out}")
  set(${var} "${out}" PARENT_SCOPE)
endfunction()

pkg_config(version --modversion qkv)
if(NOT version STREQUAL EXPECTED_VERSION)
  message(FATAL_ERROR "qkv.pc says version ${version}, the project ${EXPECTED_VERSION}")
endif()
pkg_config(flags --cflags --libs qkv)
pkg_config(eigen_includes --cflags-only-I eigen3)
foreach(include IN LISTS eigen_includes)
  string(REGEX REPLACE "^-I" "" dir "${include}")
  list(TRANSFORM flags REPLACE "^${include}$" "-isystem;${dir}")
endforeach()
message(STATUS "pkg-config --cflags --libs qkv: ${flags}")

separate_arguments(cxx_flags UNIX_COMMAND "${CXX_FLAGS}")
get_filename_component(dir "${OUTPUT}" DIRECTORY)
file(MAKE_DIRECTORY "${dir}")
set(command "${CXX}" -std=c++17 ${cxx_flags} -O2 "-DQKV_EXPECTED_VERSION=\"${EXPECTED_VERSION}\"" "${SOURCE}" -o "${OUTPUT}" ${flags})
string(REPLACE ";" " " shown "${command}")
message(STATUS "${shown}")
execute_process(COMMAND ${command} RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "the pkg-config consumer did not build")
endif()
execute_process(COMMAND "${OUTPUT}" RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "the pkg-config consumer failed (status ${status})")
endif()
