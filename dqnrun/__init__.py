"""dqnrun: a command-line experiment runner for value-based deep reinforcement learning."""

__version__ = "0.1.0"
