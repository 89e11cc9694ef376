from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IceCandidate(_message.Message):
    __slots__ = ("candidate", "sdp_mid", "sdp_mline_index", "username_fragment")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    SDP_MID_FIELD_NUMBER: _ClassVar[int]
    SDP_MLINE_INDEX_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FRAGMENT_FIELD_NUMBER: _ClassVar[int]
    candidate: str
    sdp_mid: str
    sdp_mline_index: int
    username_fragment: str
    def __init__(self, candidate: _Optional[str] = ..., sdp_mid: _Optional[str] = ..., sdp_mline_index: _Optional[int] = ..., username_fragment: _Optional[str] = ...) -> None: ...

class SessionDescription(_message.Message):
    __slots__ = ("type", "sdp")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OFFER: _ClassVar[SessionDescription.Type]
        ANSWER: _ClassVar[SessionDescription.Type]
        RENEGOTIATION_OFFER: _ClassVar[SessionDescription.Type]
        ICE_RESTART_OFFER: _ClassVar[SessionDescription.Type]
    OFFER: SessionDescription.Type
    ANSWER: SessionDescription.Type
    RENEGOTIATION_OFFER: SessionDescription.Type
    ICE_RESTART_OFFER: SessionDescription.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SDP_FIELD_NUMBER: _ClassVar[int]
    type: SessionDescription.Type
    sdp: str
    def __init__(self, type: _Optional[_Union[SessionDescription.Type, str]] = ..., sdp: _Optional[str] = ...) -> None: ...
