"""Tests for actrix.core."""
