"""Tests of unloc_tf.layers."""
