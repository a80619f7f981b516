"""atomvla: a data engine and trainer for atomic-subtask robot learning."""

__version__ = "0.1.0"
