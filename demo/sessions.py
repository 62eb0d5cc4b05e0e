"""New sessions that start without a copy of every block's config.

Gradio builds, for every new session, the config of every block of the page (`SessionState.config_values`),
which it reads only to write a deep link (`gr.DeepLinkButton`) or to update a block a handler returned. On a
page of many blocks, like this one, that is most of what a new session costs the server, and every call over
the plain HTTP API without a session hash is a new session. `LeanSessionState` starts with none of those configs
and builds each one when it is first needed: blocks a handler updates as before, the rest when a deep link
asks for the whole page. What a session holds and what a visitor sees are unchanged.
bench/bench_app_latency.py measures a new session's /ask with and without it (bench/results/app_latency.txt).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import gradio.state_holder
from gradio.state_holder import SessionState


class LeanSessionState(SessionState):
    """A SessionState whose per-block configs are built on first use instead of when the session starts."""

    def __init__(self, blocks):
        # Gradio's own initialiser, given the page's configs but no blocks to copy them for.
        super().__init__(SimpleNamespace(default_config=blocks.default_config, blocks={}))
        self._page_block_ids = [key for key in self.blocks_config.blocks if key in blocks.blocks]

    @property
    def components(self) -> Iterator[dict]:
        """Every block's config, as Gradio's deep link reads it (the ones not built yet are built now)."""
        for key in self._page_block_ids:
            if key not in self.config_values:
                self.config_values[key] = self.blocks_config.config_for_block(key, [], self.blocks_config.blocks[key])
        yield from super().components


def use_lean_sessions() -> None:
    """Make the server's session store create LeanSessionState for each new session (process-wide)."""
    gradio.state_holder.SessionState = LeanSessionState
