"""IEEE 1815.2 (DNP3 for DER): the gateway as a DNP3 outstation, over the same core.

- ``keys``: the ``[dnp3]`` section (imports no engine).
- ``points``: the point map as data (DNP Users Group AN2018-001 as EPRI published it).
- ``maps``: functions offered / not offered, refusal causes as DNP3 command statuses.
- ``adapter``: ``load(ctx)``; the py1815 outstation on its own asyncio thread.
"""
