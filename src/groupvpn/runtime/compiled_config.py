"""The key server's configuration, compiled: the checked setup kept in the state directory.

Junos commits a configuration into a compiled form that its daemons read at
start.  The key server does the same with what it runs (``ServerSetup``): a key
server of 8,000 members has a configuration of 32,000 lines (four per member's
IKE gateway), which takes about a second to parse and check on a small VM,
while the compiled copy loads in about 70 ms.  So a restart with an unchanged
configuration serves sooner (docs/persistence.md, "Restart to serving").

The copy is keyed by SHA-256 over the groupvpn version and the configuration
text: a changed file or another groupvpn version parses and checks the file
again, with every error reported as at any start.  It is only a cache: a copy
that cannot be read, is stale or does not unpickle is ignored and replaced.

It is a pickle, and it holds the pre-shared keys, so it is written like the
other state files (0600 in the 0700 state directory, atomically) and read only
from there: whoever could write it could also read the keys.  Reloads
(``groupvpn reload``, SIGHUP) always parse the file.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable
from pathlib import Path

from groupvpn import __version__
from groupvpn.config import ConfigError
from groupvpn.config.loader import read_config_text
from groupvpn.runtime.server_setup import ServerSetup, SetupError, server_setup_from_text
from groupvpn.runtime.state import StateDirectory, StateError

log = logging.getLogger("groupvpn")

COMPILED_FILE = "compiled-config.pickle"
_DIGEST_LENGTH = 32


def load_compiled_server_setup(
    path: Path, state_dir: Path, check: Callable[[ServerSetup], None]
) -> ServerSetup:
    """The setup of ``path``: the compiled copy when it is current, else parsed (and kept).

    ``check`` raises :class:`SetupError` for a setup this start must refuse (one
    that the configuration allows but the command line does not, such as GCM in
    the v1 dialect); a refused start leaves the state directory as it found it.
    """
    try:
        text = read_config_text(path)
    except ConfigError as exc:
        raise SetupError(str(exc)) from exc
    digest = hashlib.sha256(f"groupvpn {__version__}\n".encode() + text.encode()).digest()
    directory = StateDirectory(state_dir)
    try:
        stored = directory.read_file(COMPILED_FILE)
    except StateError:
        stored = None  # the daemon reports what is wrong with the directory itself
    if stored is not None and stored[:_DIGEST_LENGTH] == digest:
        try:
            setup = pickle.loads(stored[_DIGEST_LENGTH:])
        except Exception as exc:
            log.warning("compiled configuration %s unusable (%s); parsing %s",
                        state_dir / COMPILED_FILE, exc.__class__.__name__, path)  # fmt: skip
        else:
            if isinstance(setup, ServerSetup):
                check(setup)
                return setup
    setup = server_setup_from_text(text, str(path))
    check(setup)
    try:
        directory.prepare()
    except StateError:
        return setup  # the daemon stops on it, with the same words, once
    try:
        data = pickle.dumps(setup, protocol=pickle.HIGHEST_PROTOCOL)
        directory.write_file(COMPILED_FILE, digest + data)
    except (StateError, pickle.PicklingError) as exc:
        log.warning("compiled configuration not kept: %s", exc)
    return setup
