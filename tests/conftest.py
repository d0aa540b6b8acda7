"""Shared test set-up."""
import signal


def pytest_configure(config):
    """pytest-xdist starts its workers with SIGINT ignored, and an ignored signal stays ignored in
    every process they start: the tests that send SIGINT to a real command would then test nothing.
    Give SIGINT back its Python default here, so child processes start with it as from a shell."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
