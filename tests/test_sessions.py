"""New sessions built lazily (demo/sessions.py) hold and show exactly what Gradio's own sessions do."""

from __future__ import annotations

import gradio as gr
from gradio.state_holder import SessionState

from demo.sessions import LeanSessionState


def _page() -> gr.Blocks:
    with gr.Blocks() as page:
        question = gr.Textbox(value="what colour is the circle?", label="Question")
        gr.Slider(1, 5, value=3, step=1, label="Beams")
        answer = gr.Label(label="Answer")
        kept = gr.State(value={"key": "shapes-vlp"})
        question.submit(lambda q: q, question, answer)
    return page


def test_a_deep_link_sees_every_block_of_the_page_as_gradio_would():
    page = _page()
    eager, lean = list(SessionState(page).components), list(LeanSessionState(page).components)
    assert len(lean) == len(page.blocks)
    assert sorted(map(repr, lean)) == sorted(map(repr, eager))


def test_a_value_a_handler_set_is_what_the_deep_link_shows():
    page = _page()
    session = LeanSessionState(page)
    question_id = next(key for key, block in page.blocks.items() if getattr(block, "label", None) == "Question")
    session._update_value_in_config(question_id, "how many squares?")
    shown = {config["id"]: config for config in session.components}
    assert shown[question_id]["props"]["value"] == "how many squares?"
    # The page's own default is untouched for the next visitor.
    assert {c["id"]: c for c in LeanSessionState(page).components}[question_id]["props"]["value"] == "what colour is the circle?"


def test_each_session_gets_its_own_copy_of_a_state_value():
    page = _page()
    state_id = next(key for key, block in page.blocks.items() if isinstance(block, gr.State))
    first, second = LeanSessionState(page), LeanSessionState(page)
    first[state_id]["key"] = "zoo/med-mid"
    assert second[state_id] == {"key": "shapes-vlp"}
