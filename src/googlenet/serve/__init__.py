"""Serving the model: `googlenet serve` (an HTTP API with dynamic batching, and a web page)."""
