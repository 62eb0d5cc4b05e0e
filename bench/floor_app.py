"""The floor under /ask's latency: a bare Gradio app with /ask's exact inputs and outputs that answers at once.

    python bench/floor_app.py --port 7861

Same components (an upload image, a question, the six settings, the session's model state; two
labels, the agreement badge, two notes), the same event settings (no preprocessing, one shared
concurrency group, the same queue) and the same launch settings as the demo, but the handler
returns a fixed answer without reading the upload. What /ask costs beyond this app's time is the
demo's own work: loading the picture, the model, formatting the answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import demo  # noqa: E402,F401  (offline environment before gradio is imported)
import gradio as gr  # noqa: E402

from demo.ui import INFERENCE_CONCURRENCY, QUEUE_MAX_SIZE, launch_kwargs  # noqa: E402
from vqa import settings  # noqa: E402

FIXED = (  # what the demo's handler returns: {answer: probability} per head, the badge, two notes
    {"red": 0.9, "blue": 0.1},
    {"red": 0.8},
    '<div class="vqa-badge">✓ Both heads agree: <b>red</b></div>',
    "Top answer **90%** likely · 0 ms",
    "Generated “**red**” · sequence probability **80%** (greedy) · 0 ms",
)


def answer_at_once(image, question, top_k, decoding, num_beams, top_p, temperature, max_new_tokens, model_key):
    return FIXED


def build_floor_app() -> gr.Blocks:
    with gr.Blocks(title="floor", analytics_enabled=False) as app:
        model_key = gr.State(None)
        image = gr.Image(type="filepath", sources=["upload"])
        question = gr.Textbox()
        controls = [gr.Slider(s.minimum, s.maximum, value=s.default, step=s.step) for s in (settings.TOP_K,)]
        controls += [gr.Radio(list(settings.DECODING.choices), value=settings.DECODING.default)]
        controls += [gr.Slider(s.minimum, s.maximum, value=s.default, step=s.step)
                     for s in (settings.NUM_BEAMS, settings.TOP_P, settings.TEMPERATURE, settings.ANSWER_TOKENS)]
        outputs = [gr.Label(), gr.Label(), gr.HTML(), gr.Markdown(), gr.Markdown()]
        gr.Button("Ask").click(answer_at_once, [image, question, *controls, model_key], outputs, api_name="ask",
                               concurrency_id="model", concurrency_limit=INFERENCE_CONCURRENCY, preprocess=False)
    app.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="loopback port to serve on")
    args = parser.parse_args()
    build_floor_app().launch(**launch_kwargs(server_name="127.0.0.1", server_port=args.port, quiet=True))


if __name__ == "__main__":
    main()
