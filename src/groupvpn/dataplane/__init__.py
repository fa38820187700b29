"""The member data plane: ESP tunnel mode with address preservation and time-based anti-replay.

:mod:`.suites` names the ESP transforms, :mod:`.transforms` holds the per-SA cipher and
MAC objects, :mod:`.esp` encapsulates and decapsulates packets, :mod:`.antireplay`
is the group-time header and window, and :mod:`.drops` the typed drop reasons and
their counters.  Nothing here touches a socket or a clock: the caller passes packets
and the group time in.  ``docs/dataplane.md`` has the wire format.
"""
