"""Integrations with frameworks (ASGI/FastAPI, Django): each in its own module or subpackage,
importing its framework only there."""
