"""HTTP and WebSocket routes, one module per concern (`doorless.server.app` mounts them)."""
