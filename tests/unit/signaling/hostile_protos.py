"""Hostile ``.proto`` texts from issue 10: what crashed or bloated protoc."""

from __future__ import annotations


def nested_aggregate_option(depth: int = 6000) -> str:
    """An aggregate option value nested ``depth`` deep (SIGSEGV in protoc at 6 000)."""
    return (
        'syntax = "proto2";\npackage acme.echo;\n'
        'import "google/protobuf/descriptor.proto";\n'
        "message A { optional A a = 1; }\n"
        "extend google.protobuf.FileOptions { optional A opt = 50000; }\n"
        "option (opt) = { " + "a { " * depth + "} " * depth + "};\n"
    )


def nested_groups(depth: int = 2500) -> str:
    """Groups nested ``depth`` deep (protoc pins ~0.5 GB at 2 500)."""
    opening = "".join(f"optional group G{i} = {i + 1} {{\n" for i in range(depth))
    return (
        'syntax = "proto2";\npackage acme.echo;\nmessage M {\n'
        + opening
        + "}\n" * depth
        + "}\n"
    )
