"""Deliberately wrong answers to the exercises, each missing one idea (see test_grading.py).

Each module becomes `exercises/<exercise>.py` in a scratch project folder; they build on
the reference answers in `solutions/`, which sit beside them there.
"""
