from actrix.proto import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateKeyRequest(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: _common_pb2.NonceCredential
    def __init__(self, credential: _Optional[_Union[_common_pb2.NonceCredential, _Mapping]] = ...) -> None: ...

class GenerateKeyResponse(_message.Message):
    __slots__ = ("key_id", "public_key", "expires_at", "tolerance_seconds")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key_id: int
    public_key: str
    expires_at: int
    tolerance_seconds: int
    def __init__(self, key_id: _Optional[int] = ..., public_key: _Optional[str] = ..., expires_at: _Optional[int] = ..., tolerance_seconds: _Optional[int] = ...) -> None: ...

class GetSecretKeyRequest(_message.Message):
    __slots__ = ("key_id", "credential")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    key_id: int
    credential: _common_pb2.NonceCredential
    def __init__(self, key_id: _Optional[int] = ..., credential: _Optional[_Union[_common_pb2.NonceCredential, _Mapping]] = ...) -> None: ...

class GetSecretKeyResponse(_message.Message):
    __slots__ = ("key_id", "secret_key", "expires_at", "tolerance_seconds")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key_id: int
    secret_key: str
    expires_at: int
    tolerance_seconds: int
    def __init__(self, key_id: _Optional[int] = ..., secret_key: _Optional[str] = ..., expires_at: _Optional[int] = ..., tolerance_seconds: _Optional[int] = ...) -> None: ...

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("status", "service", "backend", "key_count", "timestamp")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    KEY_COUNT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    status: str
    service: str
    backend: str
    key_count: int
    timestamp: int
    def __init__(self, status: _Optional[str] = ..., service: _Optional[str] = ..., backend: _Optional[str] = ..., key_count: _Optional[int] = ..., timestamp: _Optional[int] = ...) -> None: ...
