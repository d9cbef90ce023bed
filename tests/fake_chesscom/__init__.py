"""A Chess.com-like API of the project's own, for end-to-end tests and benchmarks."""

from .server import FakeChessCom
from .world import World, recent_months

__all__ = ["FakeChessCom", "World", "recent_months"]
