"""The checks every actor message and relay passes (signaling.md §4, §5.2, §6.1).

Realm validity, the credential, and the identity rules added over the
original (§11): the credential's actor id must be ``source``, and ``source``
must be the actor bound to the socket when it has one. A failed check is
answered with ``server_to_actr.error`` here, so callers only stop.

The credential check has a synchronous fast path: when the validator keeps a
token cache (``validate_cached``) and the token is in it, relays complete
without a Deferred. A miss (or any failure) goes through the asynchronous
``validate``, which produces the exact error text. On top of that a session
keeps the last relay credential that checked out, with the time until which
the validator's answer holds (``cached_until``), so a sender's later relays
cost a comparison and a clock read instead of a hash and an LRU update (they
are then not counted in the validator's accepted/hit counters).
"""

from __future__ import annotations

from collections.abc import Callable

from actrix.core.actrid import actr_id_repr
from actrix.core.interfaces import (
    Claims,
    CredentialError,
    CredentialValidator,
    RealmDirectory,
)
from actrix.proto import actr_pb2, signaling_pb2
from actrix.signaling import messages as m
from actrix.signaling.sessions import Session, Sessions

CachedLookup = Callable[[bytes, int, int], Claims | None]
CachedUntil = Callable[[bytes, int, int], tuple[Claims, float] | None]


class MessageChecks:
    """Realm, credential and identity checks, answering failures on the session."""

    def __init__(
        self,
        realms: RealmDirectory,
        validator: CredentialValidator,
        sessions: Sessions,
    ) -> None:
        self._realms = realms
        self._validator = validator
        self._sessions = sessions
        self._cached: CachedLookup | None = getattr(validator, "validate_cached", None)
        self._cached_until: CachedUntil | None = getattr(
            validator, "cached_until", None
        )

    def realm_ok(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        source: actr_pb2.ActrId,
    ) -> bool:
        """§4.1 for ``source``'s realm; answers 403 when it is unusable."""
        problem = self._realms.realm_problem(source.realm.realm_id)
        if problem is None:
            return True
        self._sessions.reply_error(
            session, envelope, source, 403, m.REALM_FAILED + problem, "realm"
        )
        return False

    def cached_claims(
        self, credential: actr_pb2.AIdCredential, realm_id: int
    ) -> Claims | None:
        """Claims of an already validated, still valid token; None means "ask"."""
        if self._cached is None:
            return None
        return self._cached(
            credential.encrypted_token, credential.token_key_id, realm_id
        )

    def session_claims(
        self,
        session: Session,
        credential: actr_pb2.AIdCredential,
        realm_id: int,
        now: float,
    ) -> Claims | None:
        """:meth:`cached_claims`, answered from the session's last relay
        credential while the validator's answer for it holds."""
        token = credential.encrypted_token
        key_id = credential.token_key_id
        auth = session.relay_auth
        if (
            auth is not None
            and now <= auth[4]
            and auth[1] == key_id
            and auth[2] == realm_id
            and auth[0] == token
        ):
            return auth[3]
        if self._cached_until is None:
            return self.cached_claims(credential, realm_id)
        found = self._cached_until(token, key_id, realm_id)
        if found is None:
            return None
        claims, until = found
        session.relay_auth = (token, key_id, realm_id, claims, until)
        return claims

    async def authenticate(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        source: actr_pb2.ActrId,
        credential: actr_pb2.AIdCredential,
        mismatch_text: str,
    ) -> Claims | None:
        """Credential valid for ``source`` and ``source`` is this socket's actor."""
        try:
            claims = await self._validator.validate(
                credential.encrypted_token,
                credential.token_key_id,
                source.realm.realm_id,
            )
        except CredentialError as e:
            self._sessions.reply_error(
                session,
                envelope,
                source,
                e.code,
                m.CREDENTIAL_FAILED + e.reason,
                "credential",
            )
            return None
        if not self.identity_ok(session, envelope, source, claims, mismatch_text):
            return None
        return claims

    def identity_ok(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        source: actr_pb2.ActrId,
        claims: Claims,
        mismatch_text: str,
    ) -> bool:
        """The claims name ``source``, and ``source`` is the socket's bound actor."""
        actor = session.actor
        if actor is not None and actor == source:
            # The common case: the bound actor speaks for itself.
            if claims.actor_id == session.label:
                return True
            self._sessions.reply_error(
                session, envelope, source, 403, mismatch_text, "identity"
            )
            return False
        if claims.actor_id != actr_id_repr(source):
            self._sessions.reply_error(
                session, envelope, source, 403, mismatch_text, "identity"
            )
            return False
        if session.key is not None and session.key != m.actor_key(source):
            self._sessions.reply_error(
                session, envelope, source, 403, m.CONNECTION_MISMATCH, "connection"
            )
            return False
        return True
