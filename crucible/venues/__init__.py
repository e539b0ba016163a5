"""Venues behind one interface: ``ReplayVenue`` (offline) and ``CcxtVenue`` (exchange testnets)."""

from crucible.venues.base import Bar, Fill, OrderState, Venue, VenueError, VenueNetworkError, VenueRejected

__all__ = ["Bar", "Fill", "OrderState", "Venue", "VenueError", "VenueNetworkError", "VenueRejected"]
