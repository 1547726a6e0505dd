"""One package per backend: its task queue, result and event storages, backend factory and
everything they share (connections, codecs, SQL or Lua)."""
