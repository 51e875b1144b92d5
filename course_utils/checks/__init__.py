"""Graders of the exercises, one module per exercise notebook (exNN_topic.py)."""
