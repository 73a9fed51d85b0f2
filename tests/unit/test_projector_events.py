"""Every event type on the bus has a decided place in the read model."""

from __future__ import annotations

from typing import get_args

from planexe_ax.bus import Event
from planexe_ax.readmodel.projection import EVENT_ONLY, HANDLERS


def test_every_event_type_is_projected_or_kept_as_an_event() -> None:
    union, _discriminator = get_args(Event)
    types = {model.model_fields["type"].default for model in get_args(union)}
    assert types == set(HANDLERS) | EVENT_ONLY
    assert not set(HANDLERS) & EVENT_ONLY
