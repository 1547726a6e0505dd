"""OmniQ: a fast, embeddable task queue with interchangeable backends."""

from omniq.errors import OmniQError, TaskFailedError

__all__ = ["OmniQError", "TaskFailedError"]
__version__ = "0.1.0"
