"""Serve: the HTTP API and its page (Starlette/uvicorn), its worker pool, and a load tool."""
