"""Plain Keras 3 layers of unloc_tf."""
