"""Agent sessions: the queue of rounds, the worker that runs them, and what handlers call."""
