"""Offline stand-in for @rules_cc//cc:defs.bzl: the native C/C++ rules, re-exported unchanged.

@bazel_tools//tools/cpp:BUILD and the generated @local_config_cc//:BUILD load cc_library,
cc_toolchain and cc_toolchain_suite from here.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
fdo_prefetch_hints = native.fdo_prefetch_hints
fdo_profile = native.fdo_profile
objc_import = native.objc_import
objc_library = native.objc_library
