"""Test-harness MMS servers, driven over stdin/stdout from another process (``conftest``)."""
