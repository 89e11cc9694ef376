"""Generated protobuf modules; run `make protos` after editing a .proto."""
