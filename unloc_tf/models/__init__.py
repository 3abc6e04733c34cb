"""The UnLoc backbone and its named sizes."""
