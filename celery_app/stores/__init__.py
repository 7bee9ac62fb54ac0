"""The platform's Redis stores: cache, sessions, rate limits, login."""
