"""The local stack of real services: vLLM (CPU build, tiny generated model), S3 (moto's server mode),
Prometheus (Debian's binary) and the gateway. Used by the tests' session fixtures and by `stack up`."""
