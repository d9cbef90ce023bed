"""A Chess.com-like API of the project's own, for end-to-end tests and benchmarks."""

from .server import FakeChessCom, http_get
from .world import World, recent_months

__all__ = ["FakeChessCom", "World", "http_get", "recent_months"]
