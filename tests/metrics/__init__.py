"""Tests of unloc_tf.metrics (numpy only)."""
