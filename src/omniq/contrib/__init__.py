"""Integrations of OmniQ with frameworks (ASGI/FastAPI, Django)."""
