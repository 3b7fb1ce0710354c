"""Offline stand-in for @rules_java//java:defs.bzl: the native Java rules, re-exported unchanged.

Toolchain resolution loads @bazel_tools//tools/jdk:BUILD (registered as @bazel_tools//tools/jdk:all),
which loads java_import, java_runtime and java_toolchain from here. Nothing Java is built.
"""

java_binary = native.java_binary
java_import = native.java_import
java_library = native.java_library
java_lite_proto_library = native.java_lite_proto_library
java_package_configuration = native.java_package_configuration
java_plugin = native.java_plugin
java_proto_library = native.java_proto_library
java_runtime = native.java_runtime
java_test = native.java_test
java_toolchain = native.java_toolchain
