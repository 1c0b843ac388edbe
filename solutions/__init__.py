"""Reference answers to the two graded exercises (same module names as `exercises/`)."""
