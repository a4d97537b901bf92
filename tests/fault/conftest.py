"""Fault tests share the integration tier's exchange fixtures."""

from tests.integration.conftest import exchange, fanout_only, make_stack

__all__ = ["exchange", "fanout_only", "make_stack"]
