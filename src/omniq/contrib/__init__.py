"""Integrations with frameworks (each in its own subpackage, importing its framework only there)."""
