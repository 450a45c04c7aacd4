"""Rendering only: every function here takes results or errors and prints them."""
