"""IEC 61850 MMS side of the gateway.

- ``model``: declarative model spec and its libiec61850 dynamic-model build.
- ``der_model``: the model served for one inverter (IEC 61850-7-420 Ed.2) and the
  point mapping table.
- ``server``: ``MmsServer`` (start/stop/publish) on libiec61850 through ctypes.
- ``guard``: ``ConnectionGuard``: the authenticator, role checks, audit, admission
  and idle timeouts applied to the server's connections.
- ``security``: MMS's ports (``TLS_PORT`` 3782) and its ``check_bind`` wording; the
  rules themselves (TLS settings, roles, admission) are ``inverter_agent.security``'s.
- ``client``: thin libiec61850 client for ``inverter-agent read`` and tests
  (never in the server's process).
- ``functions_model``: the grid-function logical nodes, settings/controls/status maps.
- ``binding``: ``attach_functions(server, service, status_source)``: validated
  writes, controls, status publishing over a ``SettingsService``.
- ``plant_model``: several inverters and the plant view in one server.

The test-harness servers (DER model alone; function model with a real
SettingsService) live with the tests, in ``tests/adapters/mms/servers/``.
- ``icd``: ``write_icd(spec, path, ied_name)``: the SCL/ICD export of a spec.

Nothing is imported here so that importing the package does not load libiec61850.
"""
