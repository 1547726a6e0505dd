"""``omniq_worker``."""
