"""Helpers shared by several test modules; none of these files holds tests."""
