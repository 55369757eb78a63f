# Installs the headers and exports qkv::qkv so that find_package(qkv CONFIG) works from
# the install prefix.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(QKV_CONFIG_DIR "${CMAKE_INSTALL_DATADIR}/cmake/qkv")

install(TARGETS qkv EXPORT qkvTargets)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/qkv" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT qkvTargets NAMESPACE qkv:: DESTINATION "${QKV_CONFIG_DIR}")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/qkvConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/qkvConfig.cmake"
  INSTALL_DESTINATION "${QKV_CONFIG_DIR}")
# Header-only: one config serves every architecture.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/qkvConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/qkvConfig.cmake" "${PROJECT_BINARY_DIR}/qkvConfigVersion.cmake"
  DESTINATION "${QKV_CONFIG_DIR}")

# pkg-config, for builds outside CMake: share/pkgconfig, since one file serves every
# architecture. Its prefix is found from the file's own place (${pcfiledir}), so it stays
# right under `cmake --install --prefix`.
set(QKV_PC_OPENMP_FLAGS "")
if(QKV_OPENMP)
  set(QKV_PC_OPENMP_FLAGS "${OpenMP_CXX_FLAGS}")
endif()
file(RELATIVE_PATH QKV_PC_PREFIX_FROM_PCFILEDIR "/prefix/${CMAKE_INSTALL_DATADIR}/pkgconfig" "/prefix")
string(REGEX REPLACE "/$" "" QKV_PC_PREFIX_FROM_PCFILEDIR "${QKV_PC_PREFIX_FROM_PCFILEDIR}")
configure_file("${PROJECT_SOURCE_DIR}/cmake/qkv.pc.in" "${PROJECT_BINARY_DIR}/qkv.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/qkv.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")

install(FILES "${PROJECT_SOURCE_DIR}/LICENSE" DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/qkv")
