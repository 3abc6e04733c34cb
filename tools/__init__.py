"""The command-line tools.  Installed as `unloc_tf_tools` only so that the
console scripts (`unloc-train`, ...) can run them; the library is `unloc_tf`,
and no module imports a tool."""
