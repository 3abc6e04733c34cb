"""One keras.Model per task: TAL/HD, MR, AS, video-text classification."""
