"""Persisted function settings: atomic, versioned, validated on the way in and out.

``settings.json`` in the state directory holds the profile name the settings
started from and the full settings as a plain dict. Writes go to a temporary
file, are fsynced, renamed over the old file and the directory is fsynced, so
a power cut at any moment leaves the old or the new file, never a torn one.
Loading reuses the one validator (:func:`functions.settings_from_dict`); a
file that fails it is kept aside (``settings.json.bad-<time>``) and the
profile defaults are used, loudly, rather than running on half-valid settings.
"""

from __future__ import annotations

import json
import logging
import os
import time

from inverter_agent.core.files import write_atomic
from inverter_agent.functions import (
    Settings,
    SettingsError,
    get_profile,
    settings_from_dict,
    settings_to_dict,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILENAME = "settings.json"


class SettingsStore:
    def __init__(self, state_dir: str | None, profile: str) -> None:
        self.path = os.path.join(state_dir, FILENAME) if state_dir else None
        self.profile = profile
        get_profile(profile)  # unknown profile names fail here, with the list of valid ones

    def load(self) -> tuple[Settings, str]:
        """The settings to run with, and where they came from."""
        base = get_profile(self.profile)
        if self.path is None or not os.path.exists(self.path):
            return base, f"profile {self.profile} (defaults)"
        try:
            with open(self.path, encoding="utf-8") as fh:
                doc = json.load(fh)
            if doc.get("schema") != SCHEMA_VERSION:
                raise SettingsError(f"schema {doc.get('schema')!r}, expected {SCHEMA_VERSION}")
            if doc.get("profile") != self.profile:
                log.warning("%s was saved from profile %s; running profile %s: using the "
                            "saved values over the %s defaults", self.path, doc.get("profile"),
                            self.profile, self.profile)
            return settings_from_dict(doc["settings"], base=base), f"persisted {self.path}"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = f"{self.path}.bad-{int(time.time())}"
            log.error("%s is not usable (%s); kept as %s, running profile %s defaults",
                      self.path, exc, aside, self.profile)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return base, f"profile {self.profile} (persisted file refused: {exc})"

    def save(self, settings: Settings) -> None:
        if self.path is None:
            return
        doc = {"schema": SCHEMA_VERSION, "profile": self.profile, "saved": time.time(),
               "settings": settings_to_dict(settings)}
        write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())
