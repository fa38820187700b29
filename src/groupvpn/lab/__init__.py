"""``groupvpn lab``: the spec's example network in Linux network namespaces.

A key server, two group members, a core router between them and a host behind each
member, each in a network namespace of its own (see docs/lab.md).  ``layout``
describes a lab as a frozen ``LabTopology`` (``SPEC_LAB`` is the spec's example;
tests build others), ``topology`` builds and removes the namespaces, ``configs``
writes the Junos configurations, ``daemons`` starts the key server, the members and
the core's multicast router, ``demo`` sends traffic between the hosts and reports
what the core saw and what arrived.  ``probe`` (ping, multicast, capture) and
``mrouter`` run inside the namespaces as ``python -m groupvpn.lab.probe`` /
``python -m groupvpn.lab.mrouter``.
"""
