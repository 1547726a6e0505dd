"""An app with tasks and a model."""
