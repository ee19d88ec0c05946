"""The local OpenAI-compatible server: the routed adapter library for the user's other tools.

local_server.LocalServer (bind, start, stop) · api (the HTTP routes) · schema (request bodies ->
GenerationSettings) · scheduler (requests batched on the engine thread) · engine_thread (serve's own thread).
"""
from .local_server import DEFAULT_HOST, DEFAULT_PORT, LocalServer, is_loopback

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "LocalServer", "is_loopback"]
