"""The ``/signaling`` HTTP subtree: ``ws`` (the WebSocket upgrade) and ``health``."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request

from actrix.core.websocket import EdgeResource
from actrix.signaling.protocol import SignalingFactory

HEALTH_TEXT = b"Signaling is healthy"


class HealthText(Resource):
    """``GET /signaling/health``: 200, text/plain ``Signaling is healthy``."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"access-control-allow-origin", b"*")
        return HEALTH_TEXT


class SignalingRoot(Resource):
    """``/signaling``: ``ws`` and ``health``; ``factory`` is the WebSocket factory."""

    def __init__(self, factory: SignalingFactory) -> None:
        super().__init__()
        self.factory = factory
        self.putChild(b"ws", EdgeResource(factory))
        self.putChild(b"health", HealthText())


def build_resource(factory: SignalingFactory) -> SignalingRoot:
    """The resource mounted at ``/signaling``."""
    return SignalingRoot(factory)
