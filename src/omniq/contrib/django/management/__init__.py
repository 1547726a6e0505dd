"""Management commands of OmniQ's Django app."""
