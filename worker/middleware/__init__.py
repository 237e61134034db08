"""Dramatiq middleware of the worker, one behaviour per module."""
