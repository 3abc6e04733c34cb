"""Tests of unloc_tf.ops."""
