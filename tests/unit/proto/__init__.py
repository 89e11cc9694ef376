"""Tests for the generated protobuf modules in actrix.proto."""
