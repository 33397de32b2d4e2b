"""Which release serves now: the one the proxy routes to.

After a zero-downtime deploy the release serves from a blue/green slot (its own Compose project,
``<project>-<slot>``) and the project's own web service is stopped, so every host-side tool (the
probe, ServicesRunning, ``rollback --status``, the deploy's preflight) asks here what to look at.
Without a proxy with SLOTS, or while it routes to its ADDRESS, it is the project's own web service
at HEALTH_CHECK_URL, as before slots existed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..conf import ops_settings


@dataclass(frozen=True)
class ServingRelease:
    # The blue/green slot the proxy routes to; None: the project's own web service.
    slot: str | None
    health_url: str
    # Where the proxy routes (an address, or MAINTENANCE); None without a proxy or before it was set.
    routed_to: str | None = None

    def project(self, runtime) -> str | None:
        """The Compose project of the slot, or None for the project's own."""
        return runtime.slot_project(self.slot) if self.slot and hasattr(runtime, "slot_project") else None


def serving_release() -> ServingRelease:
    from . import configured_proxy

    proxy = configured_proxy()
    routed = proxy.routed_to() if proxy else None
    slots = (ops_settings.PROXY or {}).get("SLOTS") or {}
    slot = next((name for name, config in slots.items() if config["ADDRESS"] == routed), None)
    return ServingRelease(slot, slots[slot]["HEALTH_CHECK_URL"] if slot else ops_settings.HEALTH_CHECK_URL, routed)


def serving_service_states(runtime) -> list:
    """The states of the services that serve: the serving slot's and the project's others, else the runtime's own view.

    A runtime already pointed at a slot (a deploy checking the release it started) keeps its view.
    """
    slot = serving_release().slot
    if slot and runtime.can_run_side_by_side() and not runtime.slot:
        return runtime.slot_service_states(slot)
    return runtime.service_states()
