"""Routers, one per surface: OpenAI proxy, audience API, admin, health, metrics."""
