"""Settings of the test project."""
