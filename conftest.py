"""Repository-wide pytest configuration: the project's own tests use pytest's pytester."""

pytest_plugins = ("pytester",)
