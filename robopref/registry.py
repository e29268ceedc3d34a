"""The one registry style for every role (envs, policies, rewards, refiners, sources, query
selectors, arms, sensors, teleops) and the one config builder.

Entries name a config dataclass and an implementation as ``"module:attr"`` strings, so an
implementation's heavy or optional imports (a vendor library, MuJoCo, lerobot) happen only when
it is selected. Nothing registers itself by being imported: each role's registry lists its
implementations explicitly where the role is defined.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any

from robopref.errors import ConfigError


def build_config(config_cls: type, values: dict, where: str):
    """``config_cls(**values)``, turning unknown keys into one line naming the valid ones.

    ``where`` prefixes key names in the message (e.g. ``"loop"`` -> ``loop.rounds``).
    """
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}: valid keys are "
            f"{', '.join(sorted(fields))}"
        )
    return config_cls(**values)


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry:
    """Named implementations of one role: ``name -> ("module:Config", "module:Impl")``."""

    def __init__(self, role: str, entries: dict[str, tuple[str, str]]):
        self.role = role
        self._entries = dict(entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> tuple[type, Any]:
        return self.lookup(name)

    def items(self):
        return [(name, self.lookup(name)) for name in self._entries]

    def values(self):
        return [self.lookup(name) for name in self._entries]

    def _check(self, name: str | None) -> tuple[str, str]:
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self._entries, n=3)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else f"choose one of {', '.join(self._entries)}"
            )
            raise ConfigError(f"unknown {self.role} '{name}': {hint}")
        return self._entries[name]

    def config_class(self, name: str) -> type:
        return _load(self._check(name)[0])

    def implementation(self, name: str) -> Any:
        return _load(self._check(name)[1])

    def lookup(self, name: str) -> tuple[type, Any]:
        """``(config class, implementation)`` of ``name``."""
        config_ref, impl_ref = self._check(name)
        return _load(config_ref), _load(impl_ref)

    def config(self, name: str, options: dict, where: str | None = None):
        """The config dataclass of ``name`` built from plain ``options``."""
        return build_config(self.config_class(name), dict(options), where or self.role)

    def from_group(self, group: dict, where: str, **overrides) -> tuple[Any, Any]:
        """From a config group ``{"name": ..., **options}``: ``(config, implementation)``.

        ``overrides`` (e.g. a seed) replace options of the same name.
        """
        values = dict(group)
        name = values.pop("name", None)
        config_cls, impl = self.lookup(name)
        values.update(overrides)
        return build_config(config_cls, values, where), impl
