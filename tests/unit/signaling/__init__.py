"""Unit tests for the signaling service."""
