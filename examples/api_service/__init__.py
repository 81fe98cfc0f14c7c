"""Example API service instrumented by otel-ext."""
