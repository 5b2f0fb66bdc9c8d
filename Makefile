# Thin wrappers: every target calls a Python entry point.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: up down status

up:  ## start the local stack (vLLM, S3, Prometheus, gateway) and print its URLs
	$(PYTHON) -m tools.stack up

down:  ## stop what `make up` started
	$(PYTHON) -m tools.stack down

status:
	$(PYTHON) -m tools.stack status
