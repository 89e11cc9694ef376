"""The ``/signaling`` HTTP subtree: ``ws`` (the WebSocket upgrade) and ``health``."""

from __future__ import annotations

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource
from twisted.web.server import Request

from actrix.signaling.protocol import SignalingFactory

HEALTH_TEXT = b"Signaling is healthy"


class HealthText(Resource):
    """``GET /signaling/health``: 200, text/plain ``Signaling is healthy``."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"access-control-allow-origin", b"*")
        return HEALTH_TEXT


def build_resource(factory: SignalingFactory) -> Resource:
    """The resource mounted at ``/signaling``."""
    root = Resource()
    root.putChild(b"ws", WebSocketResource(factory))
    root.putChild(b"health", HealthText())
    return root
