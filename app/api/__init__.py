"""The REST API (FastAPI): thin adapters from HTTP to app.services. The Gradio UI mounts on the same app."""
