"""What the Redis task queue and result storage share.

- :mod:`~omniq._redis.keys`: the key layout (every key and channel, documented at its top).
- :mod:`~omniq._redis.client`: the client factory (lazy connect, retries), the Lua scripts of
  this package (``*.lua``, each opening with the keys it touches; task scripts share
  ``_lib.lua``), driver-error translation and the pub/sub listener.
- :mod:`~omniq._redis.codec`: task records to hash fields and back.
"""
