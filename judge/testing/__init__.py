"""Test doubles at the boundary: a fake OpenAI-compatible provider."""
