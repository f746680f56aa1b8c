"""Business logic shared by the web API, the UI, the CLI and the worker: plain typed functions taking a session.

No gradio, fastapi or torch here; the callers are thin adapters around these functions.
"""
