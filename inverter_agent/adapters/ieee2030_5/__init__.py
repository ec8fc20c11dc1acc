"""The IEEE 2030.5 / CSIP adapter: a utility program's client, over the same core as MMS.

The protocol engine is py20305 (Apache-2.0); this package is the connector
between it and the core: it turns DERControl events and the DefaultDERControl
into the core's protocol-neutral :class:`~inverter_agent.core.arbitration.UtilitySchedule`
(the core runs the schedule, so it survives a lost link), and reports the
device (DERCapability, DERSettings, DERStatus, DERAvailability, readings) from
the core's state. Imported only when ``[ieee2030_5] server`` is set; it never
imports the MMS adapter, nor the MMS adapter it.
"""
