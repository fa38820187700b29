"""GDOI exchanges run under an established IKE SA: GROUPKEY-PULL now, GROUPKEY-PUSH next."""
