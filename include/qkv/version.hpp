// SPDX-License-Identifier: MIT
// qkv's version as macros a user's code can test, e.g. `#if QKV_VERSION >= 200` for 0.2.0.
// qkv follows semantic versioning (see the README); CMakeLists.txt refuses to configure if
// its project version and these numbers differ.
#pragma once

/// \file
/// The version of qkv: #QKV_VERSION and its parts; and the C++17 every qkv header needs,
/// checked here once so that an older -std fails with one clear line.

// MSVC reports __cplusplus as 199711L unless /Zc:__cplusplus is given; _MSVC_LANG is right.
#if defined(_MSVC_LANG) ? _MSVC_LANG < 201703L : __cplusplus < 201703L
#error "qkv needs C++17 or later: compile with -std=c++17 (CMake's qkv::qkv target asks for it)"
#endif

/// Major version: raised when a release breaks source compatibility (after 1.0.0; before
/// it, a minor version may break it, as semantic versioning allows for 0.y.z).
#define QKV_VERSION_MAJOR 0
/// Minor version: raised when a release adds to the API.
#define QKV_VERSION_MINOR 1
/// Patch version: raised when a release only fixes bugs.
#define QKV_VERSION_PATCH 0

/// The version as one integer that compares: major·10000 + minor·100 + patch (0.1.0 is 100).
#define QKV_VERSION (QKV_VERSION_MAJOR * 10000 + QKV_VERSION_MINOR * 100 + QKV_VERSION_PATCH)

#define QKV_DETAIL_STRINGIFY_(x) #x
#define QKV_DETAIL_STRINGIFY(x) QKV_DETAIL_STRINGIFY_(x)

/// The version as a string, "major.minor.patch" ("0.1.0"), as CMake's project version.
#define QKV_VERSION_STRING \
  QKV_DETAIL_STRINGIFY(QKV_VERSION_MAJOR) "." QKV_DETAIL_STRINGIFY(QKV_VERSION_MINOR) "." QKV_DETAIL_STRINGIFY(QKV_VERSION_PATCH)
