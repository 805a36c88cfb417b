"""Test session setup: float64 available for theory tests; doctests see dlnsim."""

import jax
import jax.numpy as jnp
import jax.random as jr
import pytest

import dlnsim

jax.config.update("jax_enable_x64", True)


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace.update(dlnsim=dlnsim, jax=jax, jnp=jnp, jr=jr)
    doctest_namespace.update({name: getattr(dlnsim, name) for name in dlnsim.__all__})
