"""Helpers and fixtures for the studio's app and worker tests."""
