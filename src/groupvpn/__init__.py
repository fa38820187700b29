"""groupvpn: a Group VPN (GDOI key server and group members) in Python."""

__version__ = "0.1.0"
