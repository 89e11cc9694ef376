"""Rooms (enable bit 32): browsers and apps meet in named rooms (rooms.md)."""
