"""IEC 61850 MMS side of the gateway.

- ``model``: declarative model spec and its libiec61850 dynamic-model build.
- ``der_model``: the model served for one inverter and the point mapping table.
- ``server``: ``MmsServer`` (start/stop/publish) on libiec61850 through ctypes.
- ``client``: thin libiec61850 client for ``inverter-agent read`` and tests
  (never in the server's process).
- ``demo_server``: the DER model served on its own, for tests and benchmarks.

Nothing is imported here so that importing the package does not load libiec61850.
"""
