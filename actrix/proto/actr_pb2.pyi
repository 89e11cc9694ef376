import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LifecycleState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HALTED: _ClassVar[LifecycleState]
    INITIALIZING: _ClassVar[LifecycleState]
    CONSTRUCTING: _ClassVar[LifecycleState]
    RUNNING: _ClassVar[LifecycleState]
    DESTRUCTING: _ClassVar[LifecycleState]
    CRASHING: _ClassVar[LifecycleState]

class ServiceAvailabilityState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FULL: _ClassVar[ServiceAvailabilityState]
    DEGRADED: _ClassVar[ServiceAvailabilityState]
    OVERLOADED: _ClassVar[ServiceAvailabilityState]
    UNAVAILABLE: _ClassVar[ServiceAvailabilityState]

class ServiceDependencyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTHY: _ClassVar[ServiceDependencyState]
    WARNING: _ClassVar[ServiceDependencyState]
    BROKEN: _ClassVar[ServiceDependencyState]

class CompatibilityLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FULLY_COMPATIBLE: _ClassVar[CompatibilityLevel]
    BACKWARD_COMPATIBLE: _ClassVar[CompatibilityLevel]
    BREAKING_CHANGES: _ClassVar[CompatibilityLevel]
HALTED: LifecycleState
INITIALIZING: LifecycleState
CONSTRUCTING: LifecycleState
RUNNING: LifecycleState
DESTRUCTING: LifecycleState
CRASHING: LifecycleState
FULL: ServiceAvailabilityState
DEGRADED: ServiceAvailabilityState
OVERLOADED: ServiceAvailabilityState
UNAVAILABLE: ServiceAvailabilityState
HEALTHY: ServiceDependencyState
WARNING: ServiceDependencyState
BROKEN: ServiceDependencyState
FULLY_COMPATIBLE: CompatibilityLevel
BACKWARD_COMPATIBLE: CompatibilityLevel
BREAKING_CHANGES: CompatibilityLevel

class Realm(_message.Message):
    __slots__ = ("realm_id",)
    REALM_ID_FIELD_NUMBER: _ClassVar[int]
    realm_id: int
    def __init__(self, realm_id: _Optional[int] = ...) -> None: ...

class ActrType(_message.Message):
    __slots__ = ("manufacturer", "name", "version")
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    manufacturer: str
    name: str
    version: str
    def __init__(self, manufacturer: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ActrId(_message.Message):
    __slots__ = ("realm", "serial_number", "type")
    REALM_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    realm: Realm
    serial_number: int
    type: ActrType
    def __init__(self, realm: _Optional[_Union[Realm, _Mapping]] = ..., serial_number: _Optional[int] = ..., type: _Optional[_Union[ActrType, _Mapping]] = ...) -> None: ...

class ServiceSpec(_message.Message):
    __slots__ = ("name", "description", "fingerprint", "protobufs", "published_at", "tags")
    class Protobuf(_message.Message):
        __slots__ = ("package", "content", "fingerprint")
        PACKAGE_FIELD_NUMBER: _ClassVar[int]
        CONTENT_FIELD_NUMBER: _ClassVar[int]
        FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
        package: str
        content: str
        fingerprint: str
        def __init__(self, package: _Optional[str] = ..., content: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PROTOBUFS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    fingerprint: str
    protobufs: _containers.RepeatedCompositeFieldContainer[ServiceSpec.Protobuf]
    published_at: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., fingerprint: _Optional[str] = ..., protobufs: _Optional[_Iterable[_Union[ServiceSpec.Protobuf, _Mapping]]] = ..., published_at: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ActrNode(_message.Message):
    __slots__ = ("actr_id", "service_spec")
    ACTR_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SPEC_FIELD_NUMBER: _ClassVar[int]
    actr_id: ActrId
    service_spec: ServiceSpec
    def __init__(self, actr_id: _Optional[_Union[ActrId, _Mapping]] = ..., service_spec: _Optional[_Union[ServiceSpec, _Mapping]] = ...) -> None: ...

class ServiceLocation(_message.Message):
    __slots__ = ("region", "latitude", "longitude")
    REGION_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    region: str
    latitude: float
    longitude: float
    def __init__(self, region: _Optional[str] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class AIdCredential(_message.Message):
    __slots__ = ("encrypted_token", "token_key_id")
    ENCRYPTED_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    encrypted_token: bytes
    token_key_id: int
    def __init__(self, encrypted_token: _Optional[bytes] = ..., token_key_id: _Optional[int] = ...) -> None: ...

class AclRule(_message.Message):
    __slots__ = ("principals", "permission")
    class Permission(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DENY: _ClassVar[AclRule.Permission]
        ALLOW: _ClassVar[AclRule.Permission]
    DENY: AclRule.Permission
    ALLOW: AclRule.Permission
    class Principal(_message.Message):
        __slots__ = ("realm", "actr_type")
        REALM_FIELD_NUMBER: _ClassVar[int]
        ACTR_TYPE_FIELD_NUMBER: _ClassVar[int]
        realm: Realm
        actr_type: ActrType
        def __init__(self, realm: _Optional[_Union[Realm, _Mapping]] = ..., actr_type: _Optional[_Union[ActrType, _Mapping]] = ...) -> None: ...
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    principals: _containers.RepeatedCompositeFieldContainer[AclRule.Principal]
    permission: AclRule.Permission
    def __init__(self, principals: _Optional[_Iterable[_Union[AclRule.Principal, _Mapping]]] = ..., permission: _Optional[_Union[AclRule.Permission, str]] = ...) -> None: ...

class Acl(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[AclRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[AclRule, _Mapping]]] = ...) -> None: ...

class ErrorResponse(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("actr_type", "realm", "service_spec", "acl", "service", "ws_address")
    ACTR_TYPE_FIELD_NUMBER: _ClassVar[int]
    REALM_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SPEC_FIELD_NUMBER: _ClassVar[int]
    ACL_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    WS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    actr_type: ActrType
    realm: Realm
    service_spec: ServiceSpec
    acl: Acl
    service: str
    ws_address: str
    def __init__(self, actr_type: _Optional[_Union[ActrType, _Mapping]] = ..., realm: _Optional[_Union[Realm, _Mapping]] = ..., service_spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., acl: _Optional[_Union[Acl, _Mapping]] = ..., service: _Optional[str] = ..., ws_address: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("success", "error")
    class RegisterOk(_message.Message):
        __slots__ = ("actr_id", "credential", "psk", "credential_expires_at", "signaling_heartbeat_interval_secs")
        ACTR_ID_FIELD_NUMBER: _ClassVar[int]
        CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
        PSK_FIELD_NUMBER: _ClassVar[int]
        CREDENTIAL_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
        SIGNALING_HEARTBEAT_INTERVAL_SECS_FIELD_NUMBER: _ClassVar[int]
        actr_id: ActrId
        credential: AIdCredential
        psk: bytes
        credential_expires_at: _timestamp_pb2.Timestamp
        signaling_heartbeat_interval_secs: int
        def __init__(self, actr_id: _Optional[_Union[ActrId, _Mapping]] = ..., credential: _Optional[_Union[AIdCredential, _Mapping]] = ..., psk: _Optional[bytes] = ..., credential_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., signaling_heartbeat_interval_secs: _Optional[int] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: RegisterResponse.RegisterOk
    error: ErrorResponse
    def __init__(self, success: _Optional[_Union[RegisterResponse.RegisterOk, _Mapping]] = ..., error: _Optional[_Union[ErrorResponse, _Mapping]] = ...) -> None: ...

class CredentialUpdateRequest(_message.Message):
    __slots__ = ("actr_id",)
    ACTR_ID_FIELD_NUMBER: _ClassVar[int]
    actr_id: ActrId
    def __init__(self, actr_id: _Optional[_Union[ActrId, _Mapping]] = ...) -> None: ...

class UnregisterRequest(_message.Message):
    __slots__ = ("actr_id", "reason")
    ACTR_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actr_id: ActrId
    reason: str
    def __init__(self, actr_id: _Optional[_Union[ActrId, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class UnregisterResponse(_message.Message):
    __slots__ = ("success", "error")
    class UnregisterOk(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: UnregisterResponse.UnregisterOk
    error: ErrorResponse
    def __init__(self, success: _Optional[_Union[UnregisterResponse.UnregisterOk, _Mapping]] = ..., error: _Optional[_Union[ErrorResponse, _Mapping]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("availability", "power_reserve", "mailbox_backlog", "sticky_client_ids")
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    POWER_RESERVE_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_BACKLOG_FIELD_NUMBER: _ClassVar[int]
    STICKY_CLIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    availability: ServiceAvailabilityState
    power_reserve: float
    mailbox_backlog: float
    sticky_client_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, availability: _Optional[_Union[ServiceAvailabilityState, str]] = ..., power_reserve: _Optional[float] = ..., mailbox_backlog: _Optional[float] = ..., sticky_client_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ("seq", "suggest_interval_secs", "credential_warning")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SUGGEST_INTERVAL_SECS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_WARNING_FIELD_NUMBER: _ClassVar[int]
    seq: int
    suggest_interval_secs: int
    credential_warning: CredentialWarning
    def __init__(self, seq: _Optional[int] = ..., suggest_interval_secs: _Optional[int] = ..., credential_warning: _Optional[_Union[CredentialWarning, _Mapping]] = ...) -> None: ...

class CredentialWarning(_message.Message):
    __slots__ = ("type", "message")
    class WarningType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KEY_IN_TOLERANCE_PERIOD: _ClassVar[CredentialWarning.WarningType]
    KEY_IN_TOLERANCE_PERIOD: CredentialWarning.WarningType
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: CredentialWarning.WarningType
    message: str
    def __init__(self, type: _Optional[_Union[CredentialWarning.WarningType, str]] = ..., message: _Optional[str] = ...) -> None: ...

class RouteCandidatesRequest(_message.Message):
    __slots__ = ("target_type", "criteria", "client_location", "client_fingerprint")
    class NodeSelectionCriteria(_message.Message):
        __slots__ = ("candidate_count", "ranking_factors", "minimal_dependency_requirement", "minimal_health_requirement")
        class NodeRankingFactor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            MAXIMUM_POWER_RESERVE: _ClassVar[RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor]
            MINIMUM_MAILBOX_BACKLOG: _ClassVar[RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor]
            BEST_COMPATIBILITY: _ClassVar[RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor]
            NEAREST: _ClassVar[RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor]
            CLIENT_AFFINITY: _ClassVar[RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor]
        MAXIMUM_POWER_RESERVE: RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor
        MINIMUM_MAILBOX_BACKLOG: RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor
        BEST_COMPATIBILITY: RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor
        NEAREST: RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor
        CLIENT_AFFINITY: RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor
        CANDIDATE_COUNT_FIELD_NUMBER: _ClassVar[int]
        RANKING_FACTORS_FIELD_NUMBER: _ClassVar[int]
        MINIMAL_DEPENDENCY_REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
        MINIMAL_HEALTH_REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
        candidate_count: int
        ranking_factors: _containers.RepeatedScalarFieldContainer[RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor]
        minimal_dependency_requirement: ServiceDependencyState
        minimal_health_requirement: ServiceAvailabilityState
        def __init__(self, candidate_count: _Optional[int] = ..., ranking_factors: _Optional[_Iterable[_Union[RouteCandidatesRequest.NodeSelectionCriteria.NodeRankingFactor, str]]] = ..., minimal_dependency_requirement: _Optional[_Union[ServiceDependencyState, str]] = ..., minimal_health_requirement: _Optional[_Union[ServiceAvailabilityState, str]] = ...) -> None: ...
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    CLIENT_LOCATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    target_type: ActrType
    criteria: RouteCandidatesRequest.NodeSelectionCriteria
    client_location: ServiceLocation
    client_fingerprint: str
    def __init__(self, target_type: _Optional[_Union[ActrType, _Mapping]] = ..., criteria: _Optional[_Union[RouteCandidatesRequest.NodeSelectionCriteria, _Mapping]] = ..., client_location: _Optional[_Union[ServiceLocation, _Mapping]] = ..., client_fingerprint: _Optional[str] = ...) -> None: ...

class ProtocolChange(_message.Message):
    __slots__ = ("change_type", "file_name", "location", "description", "is_breaking")
    CHANGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IS_BREAKING_FIELD_NUMBER: _ClassVar[int]
    change_type: str
    file_name: str
    location: str
    description: str
    is_breaking: bool
    def __init__(self, change_type: _Optional[str] = ..., file_name: _Optional[str] = ..., location: _Optional[str] = ..., description: _Optional[str] = ..., is_breaking: _Optional[bool] = ...) -> None: ...

class CompatibilityAnalysisResult(_message.Message):
    __slots__ = ("level", "changes", "breaking_changes", "base_fingerprint", "candidate_fingerprint", "analyzed_at")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    BREAKING_CHANGES_FIELD_NUMBER: _ClassVar[int]
    BASE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ANALYZED_AT_FIELD_NUMBER: _ClassVar[int]
    level: CompatibilityLevel
    changes: _containers.RepeatedCompositeFieldContainer[ProtocolChange]
    breaking_changes: _containers.RepeatedCompositeFieldContainer[ProtocolChange]
    base_fingerprint: str
    candidate_fingerprint: str
    analyzed_at: int
    def __init__(self, level: _Optional[_Union[CompatibilityLevel, str]] = ..., changes: _Optional[_Iterable[_Union[ProtocolChange, _Mapping]]] = ..., breaking_changes: _Optional[_Iterable[_Union[ProtocolChange, _Mapping]]] = ..., base_fingerprint: _Optional[str] = ..., candidate_fingerprint: _Optional[str] = ..., analyzed_at: _Optional[int] = ...) -> None: ...

class CandidateCompatibilityInfo(_message.Message):
    __slots__ = ("candidate_id", "candidate_fingerprint", "analysis_result", "is_exact_match", "ws_address")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_RESULT_FIELD_NUMBER: _ClassVar[int]
    IS_EXACT_MATCH_FIELD_NUMBER: _ClassVar[int]
    WS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    candidate_id: ActrId
    candidate_fingerprint: str
    analysis_result: CompatibilityAnalysisResult
    is_exact_match: bool
    ws_address: str
    def __init__(self, candidate_id: _Optional[_Union[ActrId, _Mapping]] = ..., candidate_fingerprint: _Optional[str] = ..., analysis_result: _Optional[_Union[CompatibilityAnalysisResult, _Mapping]] = ..., is_exact_match: _Optional[bool] = ..., ws_address: _Optional[str] = ...) -> None: ...

class WsAddressEntry(_message.Message):
    __slots__ = ("candidate_id", "ws_address")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    WS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    candidate_id: ActrId
    ws_address: str
    def __init__(self, candidate_id: _Optional[_Union[ActrId, _Mapping]] = ..., ws_address: _Optional[str] = ...) -> None: ...

class RouteCandidatesResponse(_message.Message):
    __slots__ = ("success", "error")
    class RouteCandidatesOk(_message.Message):
        __slots__ = ("candidates", "compatibility_info", "has_exact_match", "is_sub_healthy", "ws_address_map")
        CANDIDATES_FIELD_NUMBER: _ClassVar[int]
        COMPATIBILITY_INFO_FIELD_NUMBER: _ClassVar[int]
        HAS_EXACT_MATCH_FIELD_NUMBER: _ClassVar[int]
        IS_SUB_HEALTHY_FIELD_NUMBER: _ClassVar[int]
        WS_ADDRESS_MAP_FIELD_NUMBER: _ClassVar[int]
        candidates: _containers.RepeatedCompositeFieldContainer[ActrId]
        compatibility_info: _containers.RepeatedCompositeFieldContainer[CandidateCompatibilityInfo]
        has_exact_match: bool
        is_sub_healthy: bool
        ws_address_map: _containers.RepeatedCompositeFieldContainer[WsAddressEntry]
        def __init__(self, candidates: _Optional[_Iterable[_Union[ActrId, _Mapping]]] = ..., compatibility_info: _Optional[_Iterable[_Union[CandidateCompatibilityInfo, _Mapping]]] = ..., has_exact_match: _Optional[bool] = ..., is_sub_healthy: _Optional[bool] = ..., ws_address_map: _Optional[_Iterable[_Union[WsAddressEntry, _Mapping]]] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: RouteCandidatesResponse.RouteCandidatesOk
    error: ErrorResponse
    def __init__(self, success: _Optional[_Union[RouteCandidatesResponse.RouteCandidatesOk, _Mapping]] = ..., error: _Optional[_Union[ErrorResponse, _Mapping]] = ...) -> None: ...

class DiscoveryRequest(_message.Message):
    __slots__ = ("manufacturer", "limit")
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    manufacturer: str
    limit: int
    def __init__(self, manufacturer: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class DiscoveryResponse(_message.Message):
    __slots__ = ("success", "error")
    class TypeEntry(_message.Message):
        __slots__ = ("actr_type", "name", "description", "service_fingerprint", "published_at", "tags")
        ACTR_TYPE_FIELD_NUMBER: _ClassVar[int]
        NAME_FIELD_NUMBER: _ClassVar[int]
        DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
        SERVICE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
        PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
        TAGS_FIELD_NUMBER: _ClassVar[int]
        actr_type: ActrType
        name: str
        description: str
        service_fingerprint: str
        published_at: int
        tags: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, actr_type: _Optional[_Union[ActrType, _Mapping]] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., service_fingerprint: _Optional[str] = ..., published_at: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...
    class DiscoveryOk(_message.Message):
        __slots__ = ("entries",)
        ENTRIES_FIELD_NUMBER: _ClassVar[int]
        entries: _containers.RepeatedCompositeFieldContainer[DiscoveryResponse.TypeEntry]
        def __init__(self, entries: _Optional[_Iterable[_Union[DiscoveryResponse.TypeEntry, _Mapping]]] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: DiscoveryResponse.DiscoveryOk
    error: ErrorResponse
    def __init__(self, success: _Optional[_Union[DiscoveryResponse.DiscoveryOk, _Mapping]] = ..., error: _Optional[_Union[ErrorResponse, _Mapping]] = ...) -> None: ...

class GetServiceSpecRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetServiceSpecResponse(_message.Message):
    __slots__ = ("success", "error")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: ServiceSpec
    error: ErrorResponse
    def __init__(self, success: _Optional[_Union[ServiceSpec, _Mapping]] = ..., error: _Optional[_Union[ErrorResponse, _Mapping]] = ...) -> None: ...

class SubscribeActrUpRequest(_message.Message):
    __slots__ = ("target_type",)
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    target_type: ActrType
    def __init__(self, target_type: _Optional[_Union[ActrType, _Mapping]] = ...) -> None: ...

class SubscribeActrUpResponse(_message.Message):
    __slots__ = ("success", "error")
    class SubscribeOk(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: SubscribeActrUpResponse.SubscribeOk
    error: ErrorResponse
    def __init__(self, success: _Optional[_Union[SubscribeActrUpResponse.SubscribeOk, _Mapping]] = ..., error: _Optional[_Union[ErrorResponse, _Mapping]] = ...) -> None: ...

class UnsubscribeActrUpRequest(_message.Message):
    __slots__ = ("target_type",)
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    target_type: ActrType
    def __init__(self, target_type: _Optional[_Union[ActrType, _Mapping]] = ...) -> None: ...

class UnsubscribeActrUpResponse(_message.Message):
    __slots__ = ("success", "error")
    class UnsubscribeOk(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    success: UnsubscribeActrUpResponse.UnsubscribeOk
    error: ErrorResponse
    def __init__(self, success: _Optional[_Union[UnsubscribeActrUpResponse.UnsubscribeOk, _Mapping]] = ..., error: _Optional[_Union[ErrorResponse, _Mapping]] = ...) -> None: ...

class ActrUpEvent(_message.Message):
    __slots__ = ("actor_id",)
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    actor_id: ActrId
    def __init__(self, actor_id: _Optional[_Union[ActrId, _Mapping]] = ...) -> None: ...

class ActrDownEvent(_message.Message):
    __slots__ = ("actor_id", "reason")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor_id: ActrId
    reason: str
    def __init__(self, actor_id: _Optional[_Union[ActrId, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class RoleNegotiation(_message.Message):
    __slots__ = ("to", "realm_id")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    REALM_ID_FIELD_NUMBER: _ClassVar[int]
    to: ActrId
    realm_id: int
    def __init__(self, to: _Optional[_Union[ActrId, _Mapping]] = ..., realm_id: _Optional[int] = ..., **kwargs) -> None: ...

class RoleAssignment(_message.Message):
    __slots__ = ("is_offerer", "remote_fixed")
    IS_OFFERER_FIELD_NUMBER: _ClassVar[int]
    REMOTE_FIXED_FIELD_NUMBER: _ClassVar[int]
    is_offerer: bool
    remote_fixed: bool
    def __init__(self, is_offerer: _Optional[bool] = ..., remote_fixed: _Optional[bool] = ...) -> None: ...

class IceRestartRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...
