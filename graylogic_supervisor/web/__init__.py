"""The HTTP side: the Starlette app and the uvicorn server that runs it on the daemon loop."""
