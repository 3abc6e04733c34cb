"""SavedModel export for TF Serving (`saved_model.export`) and its op audit.

`export` and `audit_ops` are loaded on first use, so that importing
`unloc_tf.export.op_audit` alone pulls in neither Keras nor TF-Text.
"""

from __future__ import annotations

__all__ = ["audit_ops", "export"]


def __getattr__(name):
  if name == "export":
    from unloc_tf.export.saved_model import export

    return export
  if name == "audit_ops":
    from unloc_tf.export.op_audit import audit_ops

    return audit_ops
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
