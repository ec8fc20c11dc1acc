"""IEC 61850 MMS side of the gateway.

- ``model``: declarative model spec and its libiec61850 dynamic-model build.
- ``der_model``: the model served for one inverter and the point mapping table.
- ``server``: ``MmsServer`` (start/stop/publish) on libiec61850 through ctypes.
- ``security``: ``TlsSettings``, ``AccessPolicy`` (roles from certificates or ACSE
  passwords), ``check_bind``, ``cert_status``, ``hash_password``.
- ``client``: thin libiec61850 client for ``inverter-agent read`` and tests
  (never in the server's process).
- ``demo_server``: the DER model served on its own, for tests and benchmarks.
- ``functions_model``: the grid-function logical nodes, settings/controls/status maps.
- ``binding``: ``attach_functions(server, service, status_source)``: validated
  writes, controls, status publishing over a ``SettingsService``.
- ``functions_server``: the function model with a real SettingsService, for tests.
- ``icd``: ``write_icd(spec, path, ied_name)``: the SCL/ICD export of a spec.

Nothing is imported here so that importing the package does not load libiec61850.
"""
