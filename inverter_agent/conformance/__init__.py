"""``inverter-agent conformance``: IEEE 1547.1-2020 style procedures against an inverter.

The gateway's own Agent and Controller run in-process against the inverter
link; a grid source (:mod:`.grid`) steps the voltage and frequency; each
procedure (:mod:`.volt_var` 5.14.4, :mod:`.constant_pf` 5.14.3,
:mod:`.enter_service` 5.6.2, :mod:`.trip` 5.4 / 5.5) records the inverter's
measurements, judges each step with the pure functions of :mod:`.evaluate`
and :mod:`.report` writes report.json and a self-contained report.html with
inline SVG plots (:mod:`.svg`). Entry point: :func:`.cli.main`.
"""
